// SPDX-License-Identifier: GPL-2.0

#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/pagemap.h>

struct folio *rust_helper_folio_alloc(gfp_t gfp, unsigned int order)
{
	return folio_alloc(gfp, order);
}

void rust_helper_folio_get(struct folio *folio)
{
	folio_get(folio);
}

void rust_helper_folio_put(struct folio *folio)
{
	folio_put(folio);
}

void rust_helper_folio_lock(struct folio *folio)
{
	folio_lock(folio);
}

pgoff_t rust_helper_folio_index(struct folio *folio)
{
	return folio_index(folio);
}

unsigned long rust_helper_folio_pfn(struct folio *folio)
{
	return folio_pfn(folio);
}

long rust_helper_folio_nr_pages(const struct folio *folio)
{
	return folio_nr_pages(folio);
}

unsigned int rust_helper_folio_order(const struct folio *folio)
{
	return folio_order(folio);
}

struct page *rust_helper_folio_page(struct folio *folio, unsigned long n)
{
	return folio_page(folio, n);
}

bool rust_helper_folio_test_uptodate(const struct folio *folio)
{
	return folio_test_uptodate(folio);
}

bool rust_helper_folio_test_hwpoison(const struct folio *folio)
{
	return folio_test_hwpoison(folio);
}

void rust_helper_folio_mark_uptodate(struct folio *folio)
{
	folio_mark_uptodate(folio);
}

void rust_helper_clear_highpage(struct page *page)
{
	clear_highpage(page);
}
