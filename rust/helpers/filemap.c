// SPDX-License-Identifier: GPL-2.0

#include <linux/fs.h>
#include <linux/pagemap.h>

struct folio *rust_helper_filemap_grab_folio(struct address_space *mapping,
					     pgoff_t index)
{
	return filemap_grab_folio(mapping, index);
}

void rust_helper_filemap_invalidate_lock(struct address_space *mapping)
{
	filemap_invalidate_lock(mapping);
}

void rust_helper_filemap_invalidate_unlock(struct address_space *mapping)
{
	filemap_invalidate_unlock(mapping);
}

void rust_helper_filemap_invalidate_lock_shared(struct address_space *mapping)
{
	filemap_invalidate_lock_shared(mapping);
}

void rust_helper_filemap_invalidate_unlock_shared(struct address_space *mapping)
{
	filemap_invalidate_unlock_shared(mapping);
}

void rust_helper_mapping_set_gfp_mask(struct address_space *mapping, gfp_t mask)
{
	mapping_set_gfp_mask(mapping, mask);
}

gfp_t rust_helper_mapping_gfp_mask(struct address_space *mapping)
{
	return mapping_gfp_mask(mapping);
}

void rust_helper_mapping_set_inaccessible(struct address_space *mapping)
{
	mapping_set_inaccessible(mapping);
}

bool rust_helper_mapping_unevictable(struct address_space *mapping)
{
	return mapping_unevictable(mapping);
}
