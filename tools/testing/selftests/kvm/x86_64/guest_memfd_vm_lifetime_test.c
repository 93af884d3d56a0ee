// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_vm_lifetime_test
 *
 * A guest_memfd pins the VM that created it: closing the VM and vCPU file
 * descriptors must not destroy the VM while a guest_memfd is still open, the
 * guest_memfd must stay fully usable (fstat, fallocate), and the VM must go
 * away once the last guest_memfd is closed.
 *
 * Whether the VM is alive is observed from outside its file descriptors:
 *  - the "EVENT=destroy" uevent that kvm_destroy_vm() broadcasts on the
 *    /dev/kvm misc device (NETLINK_KOBJECT_UEVENT), tagged with the PID of
 *    the VM's creator;
 *  - the per-VM debugfs directory /sys/kernel/debug/kvm/<pid>-<vm fd>,
 *    which exists from KVM_CREATE_VM until kvm_destroy_vm().
 * Each observer reports its own result and is skipped when the kernel does
 * not provide it (no netlink uevents, no debugfs).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <linux/falloc.h>
#include <linux/netlink.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define DATA_SLOT		10
#define DATA_GPA		(1ull << 32)
#define DATA_NPAGES		16
#define DATA_SIZE		(DATA_NPAGES * PAGE_SIZE)
/* Bind the second half of each guest_memfd, i.e. at a non-zero offset. */
#define GMEM_SIZE		(2 * DATA_SIZE)
#define GMEM_BIND_OFFSET	DATA_SIZE
#define MAX_GMEMS		2

#define KVM_DEBUGFS_DIR		"/sys/kernel/debug/kvm"

/* A destroy uevent must not show up within this time while pinned... */
#define ALIVE_TIMEOUT_MS	200
/* ... and must show up within this time once the last reference is gone. */
#define DESTROY_TIMEOUT_MS	5000

#define NR_SCENARIOS		4
#define NR_RESULTS		(NR_SCENARIOS * 2 + (NR_SCENARIOS - 1))

static const struct vm_shape protected_vm_shape = {
	.mode = VM_MODE_DEFAULT,
	.type = KVM_X86_SW_PROTECTED_VM,
};

static int uevent_fd = -1;
static bool have_debugfs;

/* What the observers saw for one VM. */
struct vm_watch {
	char debugfs_path[PATH_MAX];
	bool uevent_ok;
	bool debugfs_ok;
};

struct test_vm {
	struct kvm_vm *vm;
	int gmem[MAX_GMEMS];
	void *hva[MAX_GMEMS];
	int nr_gmems;
};

static void guest_code(uint64_t gpa, uint64_t size)
{
	uint64_t off;

	/* Fault in every private page so that KVM maps guest_memfd pages. */
	for (off = 0; off < size; off += PAGE_SIZE)
		WRITE_ONCE(*(uint64_t *)(gpa + off), gpa + off);
	for (off = 0; off < size; off += PAGE_SIZE)
		GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)(gpa + off)), gpa + off);
	GUEST_DONE();
}

static void observers_init(void)
{
	struct sockaddr_nl addr = {
		.nl_family = AF_NETLINK,
		.nl_groups = 1,		/* kernel uevents */
	};
	int fd;

	have_debugfs = !access(KVM_DEBUGFS_DIR, F_OK);
	if (!have_debugfs)
		ksft_print_msg("%s not available: %s\n", KVM_DEBUGFS_DIR,
			       strerror(errno));

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    NETLINK_KOBJECT_UEVENT);
	if (fd < 0) {
		ksft_print_msg("no uevent socket: %s\n", strerror(errno));
		return;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		ksft_print_msg("cannot bind the uevent socket: %s\n",
			       strerror(errno));
		close(fd);
		return;
	}
	uevent_fd = fd;
}

/* Is the NUL-separated uevent in buf a KVM "destroy" for our VMs? */
static bool is_our_destroy_uevent(const char *buf, size_t len)
{
	char pid_str[32];
	bool destroy = false, ours = false;
	size_t i;

	snprintf(pid_str, sizeof(pid_str), "PID=%d", getpid());
	for (i = 0; i < len; i += strlen(buf + i) + 1) {
		if (!strcmp(buf + i, "EVENT=destroy"))
			destroy = true;
		else if (!strcmp(buf + i, pid_str))
			ours = true;
	}
	return destroy && ours;
}

/*
 * Read uevents for up to timeout_ms; true as soon as a KVM destroy uevent
 * for a VM of this process arrives.  With timeout_ms == 0, just drains.
 */
static bool wait_destroy_uevent(int timeout_ms)
{
	int64_t deadline = gmem_now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = uevent_fd, .events = POLLIN };
	char buf[8192];
	ssize_t len;

	for (;;) {
		len = recv(uevent_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (len > 0) {
			buf[len] = '\0';
			if (is_our_destroy_uevent(buf, len))
				return true;
			continue;
		}
		TEST_ASSERT(len < 0 && (errno == EAGAIN || errno == EINTR),
			    "recv(uevent) returned %zd, errno %d (%s)",
			    len, errno, strerror(errno));
		if (gmem_now_ms() >= deadline)
			return false;
		poll(&pfd, 1, deadline - gmem_now_ms());
	}
}

static void watch_start(struct vm_watch *w, struct kvm_vm *vm)
{
	snprintf(w->debugfs_path, sizeof(w->debugfs_path), "%s/%d-%d",
		 KVM_DEBUGFS_DIR, getpid(), vm->fd);
	w->uevent_ok = true;
	w->debugfs_ok = true;

	if (uevent_fd >= 0)
		wait_destroy_uevent(0);

	if (have_debugfs && access(w->debugfs_path, F_OK)) {
		ksft_print_msg("%s missing right after KVM_CREATE_VM\n",
			       w->debugfs_path);
		w->debugfs_ok = false;
	}
}

static void watch_expect_alive(struct vm_watch *w, const char *when)
{
	if (uevent_fd >= 0 && wait_destroy_uevent(ALIVE_TIMEOUT_MS)) {
		ksft_print_msg("uevent: VM destroyed %s\n", when);
		w->uevent_ok = false;
	}
	if (have_debugfs && access(w->debugfs_path, F_OK)) {
		ksft_print_msg("debugfs: %s gone %s\n", w->debugfs_path, when);
		w->debugfs_ok = false;
	}
}

static void watch_expect_destroyed(struct vm_watch *w, const char *when)
{
	if (uevent_fd >= 0 && !wait_destroy_uevent(DESTROY_TIMEOUT_MS)) {
		ksft_print_msg("uevent: no destroy event %d ms %s\n",
			       DESTROY_TIMEOUT_MS, when);
		w->uevent_ok = false;
	}
	if (have_debugfs && !access(w->debugfs_path, F_OK)) {
		ksft_print_msg("debugfs: %s still present %s\n",
			       w->debugfs_path, when);
		w->debugfs_ok = false;
	}
}

static void watch_report(struct vm_watch *w, const char *name)
{
	if (uevent_fd < 0)
		ksft_test_result_skip("%s (uevent): no KVM uevents\n", name);
	else
		ksft_test_result(w->uevent_ok, "%s (uevent)\n", name);

	if (!have_debugfs)
		ksft_test_result_skip("%s (debugfs): no %s\n", name,
				      KVM_DEBUGFS_DIR);
	else
		ksft_test_result(w->debugfs_ok, "%s (debugfs)\n", name);
}

/*
 * Check that a guest_memfd whose VM has no file descriptors left still
 * behaves: fstat reports its size, fallocate allocates and punches holes,
 * and allocation beyond the size is still refused.
 */
static bool gmem_usable(int fd, size_t size)
{
	struct stat st;
	bool ok = true;

	if (fstat(fd, &st)) {
		ksft_print_msg("fstat(guest_memfd): %s\n", strerror(errno));
		return false;
	}
	if (st.st_size != size) {
		ksft_print_msg("guest_memfd size %ld, expected %zu\n",
			       (long)st.st_size, size);
		ok = false;
	}
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size)) {
		ksft_print_msg("fallocate(ALLOCATE): %s\n", strerror(errno));
		ok = false;
	}
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, size)) {
		ksft_print_msg("fallocate(PUNCH_HOLE): %s\n", strerror(errno));
		ok = false;
	}
	/* Leave some memory allocated for the final release to free. */
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, PAGE_SIZE, 2 * PAGE_SIZE)) {
		ksft_print_msg("fallocate(ALLOCATE) again: %s\n",
			       strerror(errno));
		ok = false;
	}
	if (!fallocate(fd, FALLOC_FL_KEEP_SIZE, size, PAGE_SIZE)) {
		ksft_print_msg("fallocate(ALLOCATE) beyond the size succeeded\n");
		ok = false;
	} else if (errno != EINVAL) {
		ksft_print_msg("fallocate(ALLOCATE) beyond the size: %s, expected EINVAL\n",
			       strerror(errno));
		ok = false;
	}
	return ok;
}

/*
 * Create a SW-protected VM with one vCPU and nr_gmems guest_memfds, each
 * bound to its own memslot and set private, and let the guest fault in all
 * of that memory so that the VM holds live mappings of guest_memfd pages.
 */
static void test_vm_create(struct test_vm *t, int nr_gmems)
{
	struct kvm_vcpu *vcpu;
	int i;

	t->nr_gmems = nr_gmems;
	t->vm = vm_create_shape_with_one_vcpu(protected_vm_shape, &vcpu,
					      guest_code);
	if (!nr_gmems)
		return;

	for (i = 0; i < nr_gmems; i++) {
		uint64_t gpa = DATA_GPA + i * DATA_SIZE;

		t->gmem[i] = vm_create_guest_memfd(t->vm, GMEM_SIZE, 0);
		t->hva[i] = mmap(NULL, DATA_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		TEST_ASSERT(t->hva[i] != MAP_FAILED, "mmap() failed");
		vm_set_user_memory_region2(t->vm, DATA_SLOT + i,
					   KVM_MEM_GUEST_MEMFD, gpa, DATA_SIZE,
					   t->hva[i], t->gmem[i],
					   GMEM_BIND_OFFSET);
	}
	vm_mem_set_private(t->vm, DATA_GPA, nr_gmems * DATA_SIZE);
	virt_map(t->vm, DATA_GPA, DATA_GPA, nr_gmems * DATA_NPAGES);

	vcpu_args_set(vcpu, 2, DATA_GPA, nr_gmems * DATA_SIZE);
	gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_DONE), NULL);
}

/*
 * Close the VM fd, the vCPU fds (and their kvm_run mappings) and /dev/kvm.
 * The library's own memslots are deleted on the way; the guest_memfd
 * memslots, unknown to the library, stay bound to the now fd-less VM.
 */
static void test_vm_close_fds(struct test_vm *t)
{
	kvm_vm_free(t->vm);
	t->vm = NULL;
}

static void test_vm_unmap(struct test_vm *t)
{
	int i;

	for (i = 0; i < t->nr_gmems; i++)
		TEST_ASSERT(!munmap(t->hva[i], DATA_SIZE), "munmap() failed");
}

/* Control: without a guest_memfd, the VM dies with its file descriptors. */
static void test_control(void)
{
	const char *name = "control: VM destroyed when its fds are closed";
	struct vm_watch w;
	struct test_vm t;

	test_vm_create(&t, 0);
	watch_start(&w, t.vm);
	watch_expect_alive(&w, "while its fds are open");
	test_vm_close_fds(&t);
	watch_expect_destroyed(&w, "after closing the VM fds");
	watch_report(&w, name);
}

/* One guest_memfd, bound and mapped by the guest, outlives the VM's fds. */
static void test_one_gmem(void)
{
	const char *name = "guest_memfd keeps its VM alive";
	struct vm_watch w;
	struct test_vm t;
	bool usable;

	test_vm_create(&t, 1);
	watch_start(&w, t.vm);
	test_vm_close_fds(&t);
	watch_expect_alive(&w, "after closing the VM fds, guest_memfd open");

	/* PUNCH_HOLE zaps the mappings the fd-less VM still holds. */
	usable = gmem_usable(t.gmem[0], GMEM_SIZE);
	watch_expect_alive(&w, "after fallocate() on the guest_memfd");
	test_vm_unmap(&t);
	watch_expect_alive(&w, "after unmapping the memslot's host memory");

	TEST_ASSERT(!close(t.gmem[0]), "close(guest_memfd) failed");
	watch_expect_destroyed(&w, "after closing the guest_memfd");

	ksft_test_result(usable, "guest_memfd usable after its VM's fds are closed\n");
	watch_report(&w, name);
}

/* With two guest_memfds, the VM lives until the last one is closed. */
static void test_two_gmems(void)
{
	const char *name = "VM lives until the last guest_memfd is closed";
	struct vm_watch w;
	struct test_vm t;
	bool usable;

	test_vm_create(&t, 2);
	watch_start(&w, t.vm);
	test_vm_close_fds(&t);
	watch_expect_alive(&w, "after closing the VM fds, two guest_memfds open");

	TEST_ASSERT(!close(t.gmem[0]), "close(guest_memfd) failed");
	watch_expect_alive(&w, "after closing the first of two guest_memfds");

	usable = gmem_usable(t.gmem[1], GMEM_SIZE);
	watch_expect_alive(&w, "after fallocate() on the second guest_memfd");
	test_vm_unmap(&t);

	TEST_ASSERT(!close(t.gmem[1]), "close(guest_memfd) failed");
	watch_expect_destroyed(&w, "after closing the last guest_memfd");

	ksft_test_result(usable, "second guest_memfd usable after the first is closed\n");
	watch_report(&w, name);
}

static void send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte = 'F';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	TEST_ASSERT(sendmsg(sock, &msg, 0) == 1, "sendmsg(SCM_RIGHTS) failed");
}

static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg;
	int fd;

	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

static char sock_recv_byte(int sock)
{
	char c = 0;

	return read(sock, &c, 1) == 1 ? c : 0;
}

static void sock_send_byte(int sock, char c)
{
	TEST_ASSERT(write(sock, &c, 1) == 1, "write(socket) failed");
}

/*
 * Runs in a process forked before the VM exists: receives the guest_memfd,
 * uses it on request ('U', answers 'Y' or 'N'), closes it on request ('C',
 * answers 'C').
 */
static void __noreturn gmem_holder(int sock)
{
	int fd = recv_fd(sock);

	if (fd < 0)
		exit(KSFT_FAIL);
	if (sock_recv_byte(sock) != 'U')
		exit(KSFT_FAIL);
	sock_send_byte(sock, gmem_usable(fd, GMEM_SIZE) ? 'Y' : 'N');
	if (sock_recv_byte(sock) != 'C')
		exit(KSFT_FAIL);
	close(fd);
	sock_send_byte(sock, 'C');
	exit(KSFT_PASS);
}

/*
 * The reference is held by the file, not by the creator's fd table: a
 * guest_memfd passed to another process keeps the VM alive after its
 * creator has closed everything.
 */
static void test_gmem_passed_to_other_process(void)
{
	const char *name = "guest_memfd held by another process keeps the VM alive";
	struct vm_watch w;
	struct test_vm t;
	int sv[2], status;
	bool usable;
	pid_t pid;

	TEST_ASSERT(!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
		    "socketpair() failed");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed");
	if (!pid) {
		close(sv[0]);
		gmem_holder(sv[1]);
	}
	close(sv[1]);

	test_vm_create(&t, 1);
	watch_start(&w, t.vm);
	send_fd(sv[0], t.gmem[0]);
	TEST_ASSERT(!close(t.gmem[0]), "close(guest_memfd) failed");
	test_vm_close_fds(&t);
	test_vm_unmap(&t);
	watch_expect_alive(&w, "after its creator closed all its fds");

	sock_send_byte(sv[0], 'U');
	usable = sock_recv_byte(sv[0]) == 'Y';
	watch_expect_alive(&w, "after the other process used the guest_memfd");

	sock_send_byte(sv[0], 'C');
	TEST_ASSERT(sock_recv_byte(sv[0]) == 'C',
		    "guest_memfd holder did not close its fd");
	watch_expect_destroyed(&w, "after the other process closed the guest_memfd");

	TEST_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid() failed");
	TEST_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == KSFT_PASS,
		    "guest_memfd holder failed, status 0x%x", status);
	close(sv[0]);

	ksft_test_result(usable, "guest_memfd usable in another process\n");
	watch_report(&w, name);
}

int main(int argc, char *argv[])
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));

	ksft_print_header();
	ksft_set_plan(NR_RESULTS);
	observers_init();

	test_control();
	test_one_gmem();
	test_two_gmems();
	test_gmem_passed_to_other_process();

	ksft_finished();
}
