/* broken.c: the shared plumbing described in broken.h (correct on purpose). */
#include "broken.h"

#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <netinet/in.h>

static const char usage[] =
	"usage: %s [--host ADDR] [--port N] [--max-conns N]\n"
	"  a deliberately broken TCP echo server (RFC 862) for echoconf\n"
	"  --host ADDR     address to listen on (default ::, dual-stack)\n"
	"  --port N        port, 0 picks a free one (default 7)\n"
	"  --max-conns N   clients served at once (default 10000)\n";

static _Noreturn void bad_argument(const char *prog, const char *what, const char *arg)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, arg ? arg : "(missing)");
	exit(2);
}

static long parse_number(const char *prog, const char *name, const char *arg, long lo, long hi)
{
	char *end = NULL;

	if (arg == NULL || *arg == '\0')
		bad_argument(prog, name, arg);
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		bad_argument(prog, name, arg);
	return v;
}

void parse_options(int argc, char **argv, struct options *opt)
{
	const char *prog = argc > 0 ? argv[0] : "broken";

	*opt = (struct options){ .host = "::", .port = 7, .max_conns = 10000 };
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = NULL;
		const char *eq = strchr(arg, '=');
		size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			printf(usage, prog);
			exit(0);
		}
		if (eq)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[i + 1];
		if (name_len == 6 && strncmp(arg, "--host", 6) == 0) {
			if (value == NULL || *value == '\0')
				bad_argument(prog, "--host needs an address", value);
			opt->host = value;
		} else if (name_len == 6 && strncmp(arg, "--port", 6) == 0) {
			opt->port = (int)parse_number(prog, "bad --port", value, 0, 65535);
		} else if (name_len == 11 && strncmp(arg, "--max-conns", 11) == 0) {
			opt->max_conns = (int)parse_number(prog, "bad --max-conns", value, 1, 1000000);
		} else {
			bad_argument(prog, "unknown argument", arg);
		}
		if (!eq)
			i++;
	}
}

static int reserve_fd = -1;

static void take_reserve(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* A socket of `type` bound to opt->host:opt->port. */
static int bind_socket(const struct options *opt, int type)
{
	struct addrinfo hints = { .ai_socktype = type, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[16];
	const char *host = opt->host;
	int fd = -1;

	snprintf(port, sizeof port, "%d", opt->port);
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", host, gai_strerror(rc));
		exit(2);
	}
	fd = socket(res->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && res->ai_family == AF_INET6 && strcmp(host, "::") == 0) {
		/* No IPv6 on this host: the wildcard falls back to IPv4. */
		freeaddrinfo(res);
		res = NULL;
		host = "0.0.0.0";
		hints.ai_family = AF_INET;
		rc = getaddrinfo(host, port, &hints, &res);
		if (rc != 0) {
			fprintf(stderr, "%s: %s\n", host, gai_strerror(rc));
			exit(1);
		}
		fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		die("socket");
	int on = 1, off = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
		die("setsockopt SO_REUSEADDR");
	if (res->ai_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0)
		die("setsockopt IPV6_V6ONLY");
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
		die("bind");
	freeaddrinfo(res);
	return fd;
}

int listen_on(const struct options *opt)
{
	int fd = bind_socket(opt, SOCK_STREAM);

	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	take_reserve();
	announce(fd, NULL);
	return fd;
}

int udp_bind(const struct options *opt)
{
	int fd = bind_socket(opt, SOCK_DGRAM);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int on = 1;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname");
	/* IPV6_RECVPKTINFO covers the IPv4 datagrams of a dual-stack socket too. */
	if (ss.ss_family == AF_INET6 ?
		    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) < 0 :
		    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) < 0)
		die("setsockopt PKTINFO");
	set_blocking(fd, true);
	announce(fd, NULL);
	return fd;
}

ssize_t udp_receive(int fd, void *buf, size_t size, struct datagram *d)
{
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	_Alignas(struct cmsghdr) unsigned char ctl[128];
	struct msghdr m = { .msg_name = &d->peer, .msg_namelen = sizeof d->peer,
			    .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = ctl, .msg_controllen = sizeof ctl };
	ssize_t n = recvmsg(fd, &m, 0);

	if (n < 0)
		return -1;
	d->peer_len = m.msg_namelen;
	d->ctl_len = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
		struct cmsghdr *out = (struct cmsghdr *)(void *)d->ctl;

		/* A pktinfo cut short (MSG_CTRUNC) is skipped, never read past its end. */
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			pi.ipi_spec_dst = pi.ipi_addr;
			pi.ipi_ifindex = 0;
			out->cmsg_level = IPPROTO_IP;
			out->cmsg_type = IP_PKTINFO;
			out->cmsg_len = CMSG_LEN(sizeof pi);
			memcpy(CMSG_DATA(out), &pi, sizeof pi);
			d->ctl_len = CMSG_SPACE(sizeof pi);
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
			   c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
			out->cmsg_level = IPPROTO_IPV6;
			out->cmsg_type = IPV6_PKTINFO;
			out->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
			memcpy(CMSG_DATA(out), CMSG_DATA(c), sizeof(struct in6_pktinfo));
			d->ctl_len = CMSG_SPACE(sizeof(struct in6_pktinfo));
		}
	}
	return n;
}

ssize_t udp_answer(int fd, const void *buf, size_t n, const struct datagram *d)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
	struct msghdr m = { .msg_name = (void *)&d->peer, .msg_namelen = d->peer_len,
			    .msg_iov = &iov, .msg_iovlen = 1 };

	if (d->ctl_len > 0) {
		m.msg_control = (void *)d->ctl;
		m.msg_controllen = d->ctl_len;
	}
	return sendmsg(fd, &m, 0);
}

bool udp_from_amplifier(const struct datagram *d)
{
	unsigned port = ntohs(d->peer.ss_family == AF_INET6 ?
				      ((const struct sockaddr_in6 *)&d->peer)->sin6_port :
				      ((const struct sockaddr_in *)&d->peer)->sin_port);

	return port == 0 || port == 7 || port == 13 || port == 19 || port == 37;
}

void udp_recverr(int fd)
{
	struct sockaddr_storage self;
	socklen_t len = sizeof self;
	int on = 1;

	if (getsockname(fd, (struct sockaddr *)&self, &len) < 0)
		die("getsockname");
	if (setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on) < 0 ||
	    (self.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on) < 0))
		die("setsockopt RECVERR");
}

_Noreturn void udp_serve(int argc, char **argv, const struct udp_server *srv)
{
	static char buf[65536];
	struct options opt;
	size_t size = srv->recv_size < sizeof buf ? srv->recv_size : sizeof buf;

	parse_options(argc, argv, &opt);
	exit_on_signals();
	if (srv->wildcard != NULL && strcmp(opt.host, "::") == 0)
		opt.host = srv->wildcard;
	int fd = udp_bind(&opt);
	if (srv->recverr)
		udp_recverr(fd);
	for (;;) {
		struct datagram d;

		srv->answer(fd, buf, udp_receive(fd, buf, size, &d), &d);
	}
}

void announce(int lfd, const char *shown_host)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getsockname(lfd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname");
	int rc = getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
			     NI_NUMERICHOST | NI_NUMERICSERV);
	if (rc != 0) {
		fprintf(stderr, "getnameinfo: %s\n", gai_strerror(rc));
		exit(1);
	}
	if (printf("listening %s %s\n", shown_host ? shown_host : host, port) < 0 ||
	    fflush(stdout) == EOF)
		die("stdout");
}

static void quit(int sig)
{
	(void)sig;
	_exit(0);
}

void exit_on_signals(void)
{
	struct sigaction sa = { .sa_handler = quit };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		die("sigaction");
}

int accept_client(int lfd)
{
	take_reserve(); /* once, or again if the last EMFILE could not retake it */
	/* Bounded: each turn either returns or dequeues one connection. */
	for (int tries = 0; tries < 1024; tries++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
			if (reserve_fd < 0)
				return -1;
			/* Free one slot to dequeue the client, then refuse it cleanly. */
			close(reserve_fd);
			reserve_fd = -1;
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				close(fd);
			take_reserve();
			continue;
		case EAGAIN:
			return -1;
		default:
			perror("accept");
			return -1;
		}
	}
	return -1;
}

void set_blocking(int fd, bool blocking)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		die("fcntl F_GETFL");
	flags = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
	if (fcntl(fd, F_SETFL, flags) < 0)
		die("fcntl F_SETFL");
}

void die(const char *what)
{
	perror(what);
	exit(1);
}
