/*
 * iscsictl: the command front end (installed as `iscsictl`).
 *
 * Starting CPython and importing the CLI costs more than most commands' work
 * (tens of ms on a host, over a second in a TCG guest), so when iscsictld runs,
 * its command server (iscsictl/cli/server.py) holds the CLI imported and forks a
 * child per command.  This client hands the child its stdin, stdout and stderr
 * (SCM_RIGHTS), its arguments, environment, working directory and umask, passes
 * on the signals it receives (INT, TERM, HUP, QUIT, USR1, USR2) and ends as the
 * child ended: the same exit code, or killed by the same signal.  Stopped by
 * Ctrl-Z (SIGTSTP), it stops the child too, and continues it when it is continued.
 *
 * When no command server takes the command (no daemon, not root, $ISCSICTL_DIRECT
 * set and not 0, a server of another protocol version), this process becomes the Python
 * front end instead: $ISCSICTL_PY, or `iscsictl-py` beside this executable.  A
 * command prints and exits the same either way; only its start-up time differs.
 * A forwarded signal that was ignored when this process started is not passed on:
 * it stays ignored, as it would in the Python front end.
 *
 * Socket: $ISCSICTL_CLI_SOCKET, else derived from the daemon's socket
 * ($ISCSICTL_SOCKET, default /run/iscsictld.sock) by replacing a final ".sock"
 * with "-cli.sock" (or appending "-cli"): iscsictl.cli.server.cli_socket_path.
 *
 * Wire format (native byte order: both ends are on this machine):
 *   request  struct request, then body_len bytes: the working directory, then
 *            argc arguments (argv[1:]), then envc "NAME=value" strings, each
 *            NUL-terminated; fds 0, 1, 2 ride with the header's first byte.
 *   replies  struct reply: REPLY_STARTED (value = the child's pid), then one of
 *            REPLY_EXITED (value = exit code) or REPLY_KILLED (value = signal).
 * The server closes the connection without REPLY_STARTED when it refuses a
 * request; nothing of the command has run then, so the fallback is safe.  So is
 * giving up on a REPLY_STARTED that does not come within START_TIMEOUT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_VERSION 1
#define DEFAULT_DAEMON_SOCKET "/run/iscsictld.sock"
#define PYTHON_FRONT_END "iscsictl-py"
#define START_TIMEOUT 5.0 /* s for a worker to take the command (a few ms when one is idle) */

enum { REPLY_STARTED = 1, REPLY_EXITED = 2, REPLY_KILLED = 3 };

struct request {
	char magic[4]; /* "ICLI" */
	uint32_t version;
	uint32_t umask;
	uint32_t argc;
	uint32_t envc;
	uint32_t body_len;
};

struct reply {
	uint32_t kind;
	int32_t value;
};

extern char **environ;

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define N_FORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))
static volatile sig_atomic_t child_pid;

static void forward(int sig)
{
	if (child_pid > 0)
		kill((pid_t)child_pid, sig);
}

/* Ctrl-Z (SIGTSTP): the command stops with its client, and goes on when the client is
 * continued (fg, bg), as iscsictl-py would: the worker, in another session, gets no
 * signal from the terminal.  The client stops of the same signal, so the shell says so. */
static void suspend(int sig)
{
	int saved = errno;
	struct sigaction dfl, was;
	sigset_t unblock;

	if (child_pid > 0)
		kill((pid_t)child_pid, SIGSTOP);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, &was);
	sigemptyset(&unblock);
	sigaddset(&unblock, sig);
	sigprocmask(SIG_UNBLOCK, &unblock, NULL);
	raise(sig); /* stops here until SIGCONT */
	sigaction(sig, &was, NULL);
	if (child_pid > 0)
		kill((pid_t)child_pid, SIGCONT);
	errno = saved;
}

static void forwarded_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < N_FORWARDED; i++)
		sigaddset(set, forwarded[i]);
}

/* Become the Python front end; returns only if that cannot be run. */
static int run_python(char **argv, const sigset_t *old_mask)
{
	char self[PATH_MAX], path[PATH_MAX];
	const char *py = getenv("ISCSICTL_PY");

	sigprocmask(SIG_SETMASK, old_mask, NULL);
	if (!py || !*py) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		char *slash;

		if (n < 0) {
			fprintf(stderr, "iscsictl: cannot find the Python front end: "
					"/proc/self/exe: %s\n", strerror(errno));
			return 1;
		}
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		if (snprintf(path, sizeof(path), "%s/%s", self, PYTHON_FRONT_END) >= (int)sizeof(path)) {
			fprintf(stderr, "iscsictl: path too long: %s\n", self);
			return 1;
		}
		py = path;
	}
	argv[0] = (char *)py;
	execv(py, argv);
	fprintf(stderr, "iscsictl: cannot run the Python front end %s: %s\n", py, strerror(errno));
	return 1;
}

static int socket_path(char *out, size_t size)
{
	const char *cli = getenv("ISCSICTL_CLI_SOCKET");
	const char *daemon = getenv("ISCSICTL_SOCKET");
	size_t len;

	if (cli && *cli)
		return snprintf(out, size, "%s", cli) < (int)size ? 0 : -1;
	if (!daemon || !*daemon)
		daemon = DEFAULT_DAEMON_SOCKET;
	len = strlen(daemon);
	if (len > 5 && strcmp(daemon + len - 5, ".sock") == 0)
		return snprintf(out, size, "%.*s-cli.sock", (int)(len - 5), daemon) < (int)size ? 0 : -1;
	return snprintf(out, size, "%s-cli", daemon) < (int)size ? 0 : -1;
}

static int connect_server(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (socket_path(addr.sun_path, sizeof(addr.sun_path)) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (fd <= 2) {
		/* one of stdin/stdout/stderr is closed (`>&-`): it cannot be handed over, and
		 * the command would write into this connection; the Python front end runs it */
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	{
		/* only root's server gets this process's stdio, arguments and environment
		 * (a socket path set to a directory others can write to) */
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* The request body: cwd, arguments, environment, each NUL-terminated. */
static char *build_body(int argc, char **argv, uint32_t *envc, uint32_t *len)
{
	char cwd[PATH_MAX];
	size_t total, off = 0, n = 0;
	char *body;

	if (!getcwd(cwd, sizeof(cwd)))
		return NULL; /* a removed directory: the Python front end meets it as it is */
	total = strlen(cwd) + 1;
	for (int i = 1; i < argc; i++)
		total += strlen(argv[i]) + 1;
	for (char **e = environ; *e; e++, n++)
		total += strlen(*e) + 1;
	if (total > UINT32_MAX)
		return NULL;
	body = malloc(total);
	if (!body)
		return NULL;
#define PUT(s) do { size_t l_ = strlen(s) + 1; memcpy(body + off, (s), l_); off += l_; } while (0)
	PUT(cwd);
	for (int i = 1; i < argc; i++)
		PUT(argv[i]);
	for (char **e = environ; *e; e++)
		PUT(*e);
#undef PUT
	*envc = (uint32_t)n;
	*len = (uint32_t)total;
	return body;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_request(int fd, int argc, char **argv)
{
	struct request req = { .magic = { 'I', 'C', 'L', 'I' }, .version = PROTOCOL_VERSION };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = &req, .iov_len = sizeof(req) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg;
	int fds[3] = { 0, 1, 2 };
	mode_t mask = umask(0);
	char *body;
	ssize_t n;
	int rc;

	umask(mask);
	req.umask = (uint32_t)mask;
	req.argc = (uint32_t)(argc - 1);
	body = build_body(argc, argv, &req.envc, &req.body_len);
	if (!body)
		return -1;
	memset(control.buf, 0, sizeof(control.buf));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
	do
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	rc = n == (ssize_t)sizeof(req) ? 0 : -1;
	if (rc == 0)
		rc = send_all(fd, body, req.body_len);
	free(body);
	return rc;
}

/* 1: a whole reply, 0: end of file before one, -1: error. */
static int read_reply(int fd, struct reply *r)
{
	size_t got = 0;

	while (got < sizeof(*r)) {
		ssize_t n = read(fd, (char *)r + got, sizeof(*r) - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return 0;
		got += (size_t)n;
	}
	return 1;
}

/*
 * The REPLY_STARTED that says the command runs.  While no worker has taken the request
 * (all busy, a server stopped), a terminating signal (held back so far, to be passed on
 * once the command runs) ends the wait: the connection is closed (a worker that takes
 * the request after that sees the hang-up and does not run it) and the caller dies of
 * it.  1: a reply read, 0: end of file, -1: an error.
 */
static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* REPLY_STARTED within START_TIMEOUT s, else -1 (the caller runs the Python front end: a
 * worker that takes the connection later finds it closed and runs nothing).  A server
 * killed while a worker runs a long command leaves that worker's copy of the listening
 * socket open: a connection made then waited, unanswered, for that command's end. */
static int await_started(int fd, struct reply *r, const sigset_t *old_mask)
{
	static const int ending[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	double deadline = now() + START_TIMEOUT;

	for (;;) {
		sigset_t pending;
		int n = poll(&p, 1, 100);

		if (n > 0)
			return read_reply(fd, r);
		if (n < 0 && errno != EINTR)
			return -1;
		if (now() >= deadline) /* a reply come meanwhile is taken (a command started) */
			return poll(&p, 1, 0) > 0 ? read_reply(fd, r) : -1;
		if (sigpending(&pending) < 0)
			continue;
		for (size_t i = 0; i < sizeof(ending) / sizeof(ending[0]); i++) {
			struct sigaction was;

			/* one this process started with blocked or ignored (nohup, a script's
			 * background job) is not a request to end: it stays so */
			if (sigismember(&pending, ending[i]) != 1 ||
			    sigismember(old_mask, ending[i]) == 1 ||
			    (sigaction(ending[i], NULL, &was) == 0 && was.sa_handler == SIG_IGN))
				continue;
			close(fd);
			fprintf(stderr, "iscsictl: interrupted before the command started\n");
			signal(ending[i], SIG_DFL);
			sigprocmask(SIG_SETMASK, old_mask, NULL); /* dies of it here */
			raise(ending[i]);
			_exit(128 + ending[i]);
		}
	}
}

int main(int argc, char **argv)
{
	const char *direct = getenv("ISCSICTL_DIRECT");
	sigset_t block, old_mask;
	struct sigaction sa;
	struct reply r;
	int fd;

	forwarded_set(&block);
	/* Ctrl-Z too, until the command has started: held, it then stops the command with
	 * this client (taken by default, the command a worker started meanwhile ran on while
	 * the shell said "Stopped"); iscsictl-py gets it as it would have */
	sigaddset(&block, SIGTSTP);
	sigprocmask(SIG_BLOCK, &block, &old_mask);
	if ((direct && *direct && strcmp(direct, "0") != 0) || geteuid() != 0)
		return run_python(argv, &old_mask);
	fd = connect_server();
	if (fd < 0)
		return run_python(argv, &old_mask);
	if (send_request(fd, argc, argv) < 0 || await_started(fd, &r, &old_mask) != 1 ||
	    r.kind != REPLY_STARTED) {
		close(fd); /* refused before the command started: nothing has run */
		return run_python(argv, &old_mask);
	}
	child_pid = r.value;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < N_FORWARDED; i++) {
		struct sigaction was;

		/* a signal ignored when this process started stays ignored, as it would in
		 * iscsictl-py (a shell starts a background job with SIGINT and SIGQUIT ignored) */
		if (sigaction(forwarded[i], NULL, &was) == 0 && was.sa_handler == SIG_IGN)
			continue;
		sigaction(forwarded[i], &sa, NULL);
	}
	{
		struct sigaction was;

		sa.sa_handler = suspend;
		if (sigaction(SIGTSTP, NULL, &was) == 0 && was.sa_handler != SIG_IGN)
			sigaction(SIGTSTP, &sa, NULL);
	}
	sigprocmask(SIG_SETMASK, &old_mask, NULL); /* signals held so far are passed on now */
	for (;;) {
		int rc = read_reply(fd, &r);

		if (rc != 1) {
			fprintf(stderr, "iscsictl: the command server ended the connection before "
					"the command's exit status (%s)\n",
				rc < 0 ? strerror(errno) : "end of file");
			return 1;
		}
		if (r.kind == REPLY_EXITED)
			return r.value & 0xff;
		if (r.kind == REPLY_KILLED) {
			signal(r.value, SIG_DFL);
			raise(r.value);
			return 128 + r.value;
		}
	}
}
