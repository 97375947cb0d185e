/*
 * nlshim: an LD_PRELOAD library that points a process's NETLINK_ISCSI socket at a fake
 * kernel (tests/fake_hba.py) instead of the real one, so that open-iscsi's iscsiadm and
 * iscsictl can both be run, unmodified, against offload HBAs this machine does not have.
 *
 * With ISCSI_FAKE_NETLINK=<path> in the environment, socket(AF_NETLINK, *, NETLINK_ISCSI)
 * returns an AF_UNIX datagram socket, autobound to an abstract address and connected to
 * <path>; bind() on it succeeds without doing anything (it stands for the netlink bind),
 * sendmsg()/sendto() on it drop the netlink destination address, and recvmsg()/recvfrom()
 * give the kernel's source address (AF_NETLINK, port 0).  Everything else (send, recv,
 * MSG_PEEK, poll, setsockopt) is the AF_UNIX socket's own.
 * Without the variable nothing is changed.  Built by tests/fake_hba.py with the system's
 * C compiler.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/netlink.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fake_fd = -1;

#define REAL(name, ret, ...) \
	static ret (*real_##name)(__VA_ARGS__); \
	if (!real_##name) \
		real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

int socket(int domain, int type, int protocol)
{
	REAL(socket, int, int, int, int);
	REAL(bind, int, int, const struct sockaddr *, socklen_t);
	REAL(connect, int, int, const struct sockaddr *, socklen_t);
	const char *path = getenv("ISCSI_FAKE_NETLINK");
	struct sockaddr_un addr;
	sa_family_t autobind = AF_UNIX;
	int fd;

	if (domain != AF_NETLINK || protocol != NETLINK_ISCSI || !path)
		return real_socket(domain, type, protocol);
	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = real_socket(AF_UNIX, SOCK_DGRAM | (type & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0);
	if (fd < 0)
		return fd;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	if (real_bind(fd, (struct sockaddr *)&autobind, sizeof(autobind)) < 0 ||
	    real_connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	fake_fd = fd;
	return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	REAL(bind, int, int, const struct sockaddr *, socklen_t);
	if (fd >= 0 && fd == fake_fd)
		return 0;
	return real_bind(fd, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	REAL(sendmsg, ssize_t, int, const struct msghdr *, int);
	struct msghdr copy;

	if (fd < 0 || fd != fake_fd)
		return real_sendmsg(fd, msg, flags);
	copy = *msg;
	copy.msg_name = NULL;
	copy.msg_namelen = 0;
	return real_sendmsg(fd, &copy, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
	       const struct sockaddr *addr, socklen_t alen)
{
	REAL(sendto, ssize_t, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	if (fd >= 0 && fd == fake_fd)
		return real_sendto(fd, buf, len, flags, NULL, 0);
	return real_sendto(fd, buf, len, flags, addr, alen);
}

/* the sender of what the fake kernel sends: the kernel's own address */
static void kernel_address(struct sockaddr *addr, socklen_t *len)
{
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};

	if (!addr || !len)
		return;
	memcpy(addr, &nl, *len < sizeof(nl) ? *len : sizeof(nl));
	*len = sizeof(nl);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	REAL(recvmsg, ssize_t, int, struct msghdr *, int);
	void *name = msg->msg_name;
	socklen_t namelen = msg->msg_namelen;
	ssize_t n;

	if (fd < 0 || fd != fake_fd)
		return real_recvmsg(fd, msg, flags);
	msg->msg_name = NULL;
	msg->msg_namelen = 0;
	n = real_recvmsg(fd, msg, flags);
	msg->msg_name = name;
	msg->msg_namelen = namelen;
	if (n >= 0 && name)
		kernel_address(name, &msg->msg_namelen);
	return n;
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
		 socklen_t *alen)
{
	REAL(recvfrom, ssize_t, int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t n;

	if (fd < 0 || fd != fake_fd)
		return real_recvfrom(fd, buf, len, flags, addr, alen);
	n = real_recvfrom(fd, buf, len, flags, NULL, NULL);
	if (n >= 0)
		kernel_address(addr, alen);
	return n;
}

int close(int fd)
{
	REAL(close, int, int);
	if (fd >= 0 && fd == fake_fd)
		fake_fd = -1;
	return real_close(fd);
}
