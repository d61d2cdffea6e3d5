// SPDX-License-Identifier: MIT
/*
 * core.nats: a NATS client (libnats) with the JetStream calls the fleet's
 * control plane needs. Thin: the key-value conventions (subjects, CAS
 * headers, delete markers, watches) are Lua's (zmesh.control.kv).
 *
 *   local c = core.nats.connect { servers = { "nats://203.0.113.201:4222" },
 *     nkey_seed_file = "/etc/zmesh/nats.nk", inbox_prefix = "_INBOX_n1",
 *     background = true }          -- nil, err, ename on failure
 *   c:fd()                          -- an eventfd, readable when events wait
 *   c:events()                      -- { {kind = "connected" | "disconnected"
 *                                   --   | "reconnected" | "closed" | "error"
 *                                   --   | "msg" | "done" | "overflow", …}, … }
 *   c:wait(ms)                      -- block until events wait (tools only)
 *   c:status()                      -- "connected", "reconnecting", …
 *   c:subscribe(subject) -> sid     c:unsubscribe(sid)
 *   c:publish(subject, data [, headers])
 *   c:js(op, args)       -- JetStream call, synchronous (tools)
 *   c:js_async(op, args) -- the same on the connection's worker thread:
 *                        -- returns an id; the result is a "done" event
 *   c:close()                       -- also __gc and __close
 *   core.nats.nkey_create(path) -> public key (a new user seed, 0600)
 *   core.nats.nkey_public(path) -> public key of the seed in PATH
 *
 * JetStream ops: publish {subject, data, headers, timeout}, get_last
 * {stream, subject, timeout} (direct get of a subject's last message),
 * add_consumer {stream, name, filter, deliver, policy, heartbeat,
 * inactive, headers_only, timeout}, delete_consumer {stream, name,
 * timeout}, add_stream {name, subjects, …}, stream_info {stream, timeout}.
 *
 * Threads. libnats runs its own threads (reader, flusher, reconnect,
 * subscription delivery, connection callbacks); none of them ever touches
 * Lua. Each of them only copies what happened into an event, appends it to
 * the connection's queue under a mutex and signals the eventfd; the luv
 * loop polls that descriptor and drains the queue from Lua (c:events()).
 * Calls that wait for a reply (JetStream) run either on the caller's
 * thread (c:js: the command-line tools) or on one worker thread per
 * connection (c:js_async: the daemon, whose loop must never wait on the
 * network), which queues their results as "done" events the same way.
 * The state the threads share (struct zc) is reference counted: the
 * Lua object, the connection's callbacks (until "closed") and each
 * subscription (until libnats says its last callback returned) hold one.
 *
 * Errors: nil, "ENAME: text", "ENAME" and, for JetStream API errors, the
 * JetStream error code as a fourth value (10071: wrong last sequence, the
 * compare-and-set conflict).
 */
#include "common.h"
#include "../core/err.h"

#include <nats/nats.h>
#include <sodium.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONN_MT		"zmesh.nats.conn"
#define MAX_SERVERS	16
#define MAX_EVENTS	65536
#define MAX_HEADERS	64
#define MAX_SUBJECTS	16
#define DEFAULT_TIMEOUT	5000
#define URL_LEN		256

/* ---- events and jobs ---------------------------------------------- */

enum evtype { EV_STATE, EV_ERROR, EV_MSG, EV_DONE };
enum state { ST_CONNECTED, ST_DISCONNECTED, ST_RECONNECTED, ST_CLOSED };

enum jop {
	OP_PUBLISH, OP_GET_LAST, OP_ADD_CONSUMER, OP_DELETE_CONSUMER,
	OP_ADD_STREAM, OP_STREAM_INFO, OP__COUNT
};

static const char *const op_names[] = {
	"publish", "get_last", "add_consumer", "delete_consumer",
	"add_stream", "stream_info", NULL,
};

struct job {
	struct job *next;
	lua_Integer id;
	enum jop op;
	int64_t timeout;
	char *stream, *subject, *name, *deliver;
	char *data;
	int dlen;
	char *hk[MAX_HEADERS], *hv[MAX_HEADERS];
	int nh;
	/* add_consumer */
	jsDeliverPolicy policy;
	int64_t heartbeat, inactive;
	bool headers_only;
	/* add_stream */
	char *subjects[MAX_SUBJECTS];
	int nsubjects;
	int64_t per_subject, max_bytes, max_age, replicas, duplicates;
	int32_t max_msg_size;
	bool memory, allow_direct, deny_delete, deny_purge, allow_rollup;
	/* results */
	natsStatus st;
	jsErrCode jerr;
	char *err;
	jsPubAck *pa;
	natsMsg *msg;
	jsConsumerInfo *ci;
	jsStreamInfo *si;
};

struct ev {
	struct ev *next;
	enum evtype type;
	enum state state;
	char *text;
	natsMsg *msg;
	lua_Integer sid;
	struct job *job;
};

/* What libnats' threads, the worker and Lua share. */
struct zc {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	int efd;
	struct ev *head, *tail;
	size_t nev, dropped;
	struct job *jhead, *jtail;
	bool stop, worker_started;
	pthread_t worker;
	natsOptions *opts;	/* background: the worker connects with them */
	natsConnection *nc;	/* set once connected (or retrying) */
	jsCtx *js;
	int64_t delay_min, delay_max;
};

/* A subscription's closure: libnats' until its completion callback. */
struct zsub {
	struct zc *z;
	lua_Integer sid;
};

/* A subscription as the Lua object knows it. */
struct lsub {
	struct lsub *next;
	natsSubscription *sub;
	lua_Integer sid;
};

/* The Lua object; only the Lua thread touches it. */
struct conn {
	struct zc *z;
	struct lsub *subs;
	lua_Integer next_sid, next_id;
	bool closed;
};

static void job_free(struct job *j)
{
	int i;

	if (!j)
		return;
	free(j->stream);
	free(j->subject);
	free(j->name);
	free(j->deliver);
	free(j->data);
	for (i = 0; i < j->nh; i++) {
		free(j->hk[i]);
		free(j->hv[i]);
	}
	for (i = 0; i < j->nsubjects; i++)
		free(j->subjects[i]);
	free(j->err);
	jsPubAck_Destroy(j->pa);
	natsMsg_Destroy(j->msg);
	jsConsumerInfo_Destroy(j->ci);
	jsStreamInfo_Destroy(j->si);
	free(j);
}

static void ev_free(struct ev *e)
{
	free(e->text);
	natsMsg_Destroy(e->msg);
	job_free(e->job);
	free(e);
}

static void zc_release(struct zc *z)
{
	struct ev *e, *en;
	struct job *j, *jn;
	int left;

	pthread_mutex_lock(&z->mu);
	left = --z->refs;
	pthread_mutex_unlock(&z->mu);
	if (left)
		return;
	for (e = z->head; e; e = en) {
		en = e->next;
		ev_free(e);
	}
	for (j = z->jhead; j; j = jn) {
		jn = j->next;
		job_free(j);
	}
	if (z->efd >= 0)
		close(z->efd);
	pthread_cond_destroy(&z->cv);
	pthread_mutex_destroy(&z->mu);
	free(z);
}

static void zc_retain(struct zc *z)
{
	pthread_mutex_lock(&z->mu);
	z->refs++;
	pthread_mutex_unlock(&z->mu);
}

static void signal_fd(struct zc *z)
{
	uint64_t one = 1;
	ssize_t n;

	do
		n = write(z->efd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
}

/* Append E (or count it dropped: Lua is not draining). Any thread. */
static void push_ev(struct zc *z, struct ev *e)
{
	bool drop;

	pthread_mutex_lock(&z->mu);
	drop = e->type == EV_MSG && z->nev >= MAX_EVENTS;
	if (drop) {
		z->dropped++;
	} else {
		if (z->tail)
			z->tail->next = e;
		else
			z->head = e;
		z->tail = e;
		z->nev++;
	}
	pthread_mutex_unlock(&z->mu);
	if (drop)
		ev_free(e);
	signal_fd(z);
}

static struct ev *new_ev(enum evtype type)
{
	struct ev *e = calloc(1, sizeof(*e));

	if (e)
		e->type = type;
	return e;
}

/* ---- libnats callbacks (libnats threads: no Lua here) -------------- */

static void post_state(natsConnection *nc, void *closure, enum state st)
{
	struct zc *z = closure;
	struct ev *e = new_ev(EV_STATE);
	char url[URL_LEN];

	if (!e)
		return;
	e->state = st;
	if ((st == ST_CONNECTED || st == ST_RECONNECTED) &&
	    natsConnection_GetConnectedUrl(nc, url, sizeof(url)) == NATS_OK)
		e->text = strdup(url);
	push_ev(z, e);
}

static void on_connected(natsConnection *nc, void *closure)
{
	post_state(nc, closure, ST_CONNECTED);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	post_state(nc, closure, ST_DISCONNECTED);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	post_state(nc, closure, ST_RECONNECTED);
}

/* The last callback of a connection: its reference goes with it. */
static void on_closed(natsConnection *nc, void *closure)
{
	post_state(nc, closure, ST_CLOSED);
	zc_release(closure);
}

static void on_error(natsConnection *nc, natsSubscription *sub,
		     natsStatus err, void *closure)
{
	struct zc *z = closure;
	struct ev *e = new_ev(EV_ERROR);
	const char *last;
	char buf[512];

	(void)sub;
	if (!e)
		return;
	/* The server's -ERR text (a permissions violation) when there is one. */
	last = NULL;
	if (nc)
		natsConnection_GetLastError(nc, &last);
	if (!last || !last[0])
		last = natsStatus_GetText(err);
	snprintf(buf, sizeof(buf), "%s", last);
	e->text = strdup(buf);
	e->sid = err;
	push_ev(z, e);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	struct zsub *zs = closure;
	struct ev *e = new_ev(EV_MSG);

	(void)nc;
	(void)sub;
	if (!e) {
		natsMsg_Destroy(msg);
		return;
	}
	e->msg = msg;
	e->sid = zs->sid;
	push_ev(zs->z, e);
}

static void on_sub_complete(void *closure)
{
	struct zsub *zs = closure;

	zc_release(zs->z);
	free(zs);
}

/* Reconnect backoff: doubling from delay_min up to delay_max per round
 * over the server list, with a quarter of jitter. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	struct zc *z = closure;
	int64_t d = z->delay_min;
	int i;

	(void)nc;
	for (i = 1; i < attempts && d < z->delay_max; i++)
		d *= 2;
	if (d > z->delay_max)
		d = z->delay_max;
	if (d >= 4)
		d = d - d / 4 + (int64_t)randombytes_uniform((uint32_t)(d / 4 + 1));
	return d;
}

/* ---- errors --------------------------------------------------------- */

static int errno_of(natsStatus s, jsErrCode jerr)
{
	switch (jerr) {
	case JSStreamWrongLastSequenceErr:
		return ESTALE;
	case JSStreamNotFoundErr:
	case JSConsumerNotFoundErr:
	case JSNoMessageFoundErr:
		return ENOENT;
	case JSClusterNotAvailErr:
		return EAGAIN;
	case JSStreamNameExistErr:
		return EEXIST;
	default:
		break;
	}
	switch (s) {
	case NATS_TIMEOUT:
		return ETIMEDOUT;
	case NATS_NO_SERVER:
		return ECONNREFUSED;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NOT_YET_CONNECTED:
		return ENOTCONN;
	case NATS_NOT_PERMITTED:
	case NATS_CONNECTION_AUTH_FAILED:
		return EACCES;
	case NATS_NOT_FOUND:
		return ENOENT;
	case NATS_NO_RESPONDERS:
		return EHOSTUNREACH;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
		return EINVAL;
	case NATS_NO_MEMORY:
		return ENOMEM;
	case NATS_MAX_PAYLOAD:
		return EMSGSIZE;
	case NATS_ILLEGAL_STATE:
		return EBADFD;
	default:
		return EIO;
	}
}

/* The text of the calling thread's last libnats error, for status S. */
static char *error_text(natsStatus s)
{
	natsStatus ls = NATS_OK;
	const char *last = nats_GetLastError(&ls);

	/* An older error's text is not this one's. */
	if (!last || !last[0] || ls != s)
		return strdup(natsStatus_GetText(s));
	/* libnats prefixes "(file.c:123): ": not for users. */
	while (last[0] == '(' && strstr(last, "): "))
		last = strstr(last, "): ") + 3;
	return strdup(last);
}

static int push_nats_error(lua_State *L, natsStatus s, jsErrCode jerr,
			   const char *text)
{
	zm_err_clear();
	zm_err_set("%s", text && text[0] ? text : natsStatus_GetText(s));
	zm_push_error(L, errno_of(s, jerr));
	if (jerr) {
		lua_pushinteger(L, jerr);
		return 4;
	}
	return 3;
}

static int push_failure(lua_State *L, natsStatus s, jsErrCode jerr)
{
	char *text = error_text(s);
	int n = push_nats_error(L, s, jerr, text);

	free(text);
	return n;
}

/* ---- argument checks ------------------------------------------------ */

static struct conn *check_conn(lua_State *L, int idx)
{
	struct conn *c = luaL_checkudata(L, idx, CONN_MT);

	luaL_argcheck(L, !c->closed, idx, "the connection is closed");
	return c;
}

/* A subject: printable, no spaces, no empty token. */
static bool subject_ok(const char *s, size_t n, bool wildcards)
{
	size_t i;

	if (!n || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= ' ' || ch >= 127)
			return false;
		if (ch == '.' && s[i + 1] == '.')
			return false;
		if (!wildcards && (ch == '*' || ch == '>'))
			return false;
	}
	return true;
}

static const char *subject_arg(lua_State *L, int idx, const char *key,
			       bool wildcards, bool required)
{
	const char *s;
	size_t n;

	if (key) {
		s = zm_opt_string(L, idx, key, required);
		if (!s)
			return NULL;
		lua_getfield(L, idx, key);
		lua_tolstring(L, -1, &n);
		lua_pop(L, 1);
		if (!subject_ok(s, n, wildcards) || strlen(s) != n)
			zm_field_error(L, idx, key, "not a NATS subject");
		return s;
	}
	s = luaL_checklstring(L, idx, &n);
	luaL_argcheck(L, subject_ok(s, n, wildcards) && strlen(s) == n, idx,
		      "not a NATS subject");
	return s;
}

/* A name (stream, consumer, inbox token): 1..64 of A-Z a-z 0-9 _ -. */
static const char *name_field(lua_State *L, int idx, const char *key,
			      bool required)
{
	const char *s = zm_opt_string(L, idx, key, required);
	size_t i, n;

	if (!s)
		return NULL;
	n = strlen(s);
	if (!n || n > 64)
		zm_field_error(L, idx, key, "must be 1..64 characters");
	for (i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", s[i]))
			zm_field_error(L, idx, key, "only A-Z a-z 0-9 _ - are allowed");
	return s;
}

/* A header table at field KEY: string names (tokens) to string values. */
static void check_headers(lua_State *L, int idx, const char *key)
{
	int n = 0, t = lua_getfield(L, idx, key);

	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (t != LUA_TTABLE)
		zm_field_error(L, idx, key, "table expected");
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		const char *k, *v;
		size_t kn, vn, i;

		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
			zm_field_error(L, idx, key, "names and values must be strings");
		k = lua_tolstring(L, -2, &kn);
		v = lua_tolstring(L, -1, &vn);
		if (!kn || kn > 128)
			zm_field_error(L, idx, key, "a header name must be 1..128 characters");
		for (i = 0; i < kn; i++)
			if (k[i] <= ' ' || k[i] == ':' || (unsigned char)k[i] >= 127)
				zm_field_error(L, idx, key, "a header name must be printable, without ':'");
		if (memchr(v, '\r', vn) || memchr(v, '\n', vn) || strlen(v) != vn)
			zm_field_error(L, idx, key, "a header value may not hold CR, LF or NUL");
		if (++n > MAX_HEADERS)
			zm_field_error(L, idx, key, "too many headers");
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static int64_t opt_ms(lua_State *L, int idx, const char *key, int64_t dflt)
{
	return (int64_t)zm_opt_int(L, idx, key, dflt, 1, 3600 * 1000);
}

/* ---- connect -------------------------------------------------------- */

/* Read the user seed in PATH; derive its public key into PUB (57 bytes).
 * Returns 0 or -errno (text set). */
static int seed_public(const char *path, char *pub, size_t publen);

static void *worker_main(void *arg);

static const char *const connect_fields[] = {
	"servers", "name", "user", "password_file", "nkey_seed_file", "creds_file",
	"inbox_prefix", "timeout", "reconnect_min", "reconnect_max",
	"ping_interval", "max_pings_out", "background", NULL,
};

static const struct zm_contract contracts[] = {
	{ "nats.connect", connect_fields },
	{ NULL, NULL },
};

/* The password in PATH (its first line), read here so that it never
 * passes through Lua. Returns a sodium_malloc'd string or NULL (errno). */
static char *read_secret(const char *path, int *err)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*err = 0;
	if (sodium_init() < 0) {
		if (fd >= 0)
			close(fd);
		*err = EIO;
		return NULL;
	}
	if (fd < 0) {
		*err = errno;
		zm_err_set("%s", path);
		return NULL;
	}
	buf = sodium_malloc(1024);
	if (!buf) {
		close(fd);
		*err = ENOMEM;
		return NULL;
	}
	while (len < 1023 && (n = read(fd, buf + len, 1023 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	if (!buf[0]) {
		sodium_free(buf);
		*err = EINVAL;
		zm_err_set("%s: no password in it", path);
		return NULL;
	}
	return buf;
}

static int l_connect(lua_State *L)
{
	const char *servers[MAX_SERVERS];
	const char *name, *user, *pwfile, *seed, *creds, *inbox;
	int64_t timeout, rmin, rmax, ping;
	lua_Integer pings;
	int background, nservers = 0, i, err;
	natsOptions *o = NULL;
	natsStatus s;
	struct conn *c;
	struct zc *z;
	char pub[64];
	char *password = NULL;

	zm_check_fields(L, 1, connect_fields);
	if (lua_getfield(L, 1, "servers") != LUA_TTABLE)
		zm_field_error(L, 1, "servers", "a list of nats:// URLs expected");
	nservers = (int)luaL_len(L, -1);
	if (nservers < 1 || nservers > MAX_SERVERS)
		zm_field_error(L, 1, "servers", "must list 1..16 URLs");
	for (i = 0; i < nservers; i++) {
		size_t n;

		if (lua_geti(L, -1, i + 1) != LUA_TSTRING)
			zm_field_error(L, 1, "servers", "URLs must be strings");
		servers[i] = lua_tolstring(L, -1, &n);
		if (n < 8 || n >= URL_LEN || strlen(servers[i]) != n ||
		    strncmp(servers[i], "nats://", 7))
			zm_field_error(L, 1, "servers", "each must be nats://HOST[:PORT]");
		lua_pop(L, 1);	/* the list keeps the string alive */
	}
	name = zm_opt_string(L, 1, "name", false);
	user = zm_opt_string(L, 1, "user", false);
	pwfile = zm_opt_string(L, 1, "password_file", false);
	seed = zm_opt_string(L, 1, "nkey_seed_file", false);
	creds = zm_opt_string(L, 1, "creds_file", false);
	inbox = subject_arg(L, 1, "inbox_prefix", false, false);
	if (inbox && strlen(inbox) > 128)
		zm_field_error(L, 1, "inbox_prefix", "longer than 128 characters");
	timeout = opt_ms(L, 1, "timeout", 2000);
	rmin = opt_ms(L, 1, "reconnect_min", 250);
	rmax = opt_ms(L, 1, "reconnect_max", 5000);
	ping = opt_ms(L, 1, "ping_interval", 5000);
	pings = zm_opt_int(L, 1, "max_pings_out", 2, 1, 100);
	background = zm_opt_bool(L, 1, "background", 0);
	if (rmax < rmin)
		zm_field_error(L, 1, "reconnect_max", "below reconnect_min");
	if ((user != NULL) != (pwfile != NULL))
		zm_field_error(L, 1, user ? "password_file" : "user", "user and password_file go together");
	if ((user != NULL) + (seed != NULL) + (creds != NULL) > 1)
		zm_field_error(L, 1, "nkey_seed_file", "one of user, nkey_seed_file and creds_file");

	zm_err_clear();
	if (seed) {
		err = seed_public(seed, pub, sizeof(pub));
		if (err)
			return zm_push_error(L, err);
	}
	if (pwfile) {
		password = read_secret(pwfile, &err);
		if (!password)
			return zm_push_error(L, err);
	}

	z = calloc(1, sizeof(*z));
	if (!z) {
		if (password)
			sodium_free(password);
		return zm_push_error(L, ENOMEM);
	}
	pthread_mutex_init(&z->mu, NULL);
	pthread_cond_init(&z->cv, NULL);
	z->refs = 1;
	z->delay_min = rmin;
	z->delay_max = rmax;
	z->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (z->efd < 0) {
		err = errno;
		if (password)
			sodium_free(password);
		zc_release(z);
		return zm_push_error(L, err);
	}

	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, servers, nservers);
	if (s == NATS_OK && name)
		s = natsOptions_SetName(o, name);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, timeout);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, rmin);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, z);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, ping);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, (int)pings);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, z);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_reconnected, z);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_closed, z);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_error, z);
	if (s == NATS_OK && background)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, z);
	if (s == NATS_OK && inbox)
		s = natsOptions_SetCustomInboxPrefix(o, inbox);
	if (s == NATS_OK && user)
		s = natsOptions_SetUserInfo(o, user, password);
	if (s == NATS_OK && seed)
		s = natsOptions_SetNKeyFromSeed(o, pub, seed);
	if (s == NATS_OK && creds)
		s = natsOptions_SetUserCredentialsFromFiles(o, creds, NULL);
	if (password)
		sodium_free(password);
	if (s != NATS_OK) {
		int n = push_failure(L, s, 0);

		natsOptions_Destroy(o);
		zc_release(z);
		return n;
	}

	/* The callbacks' reference, given back by on_closed. */
	z->refs++;
	if (background) {
		int err;

		z->opts = o;
		z->worker_started = true;
		err = pthread_create(&z->worker, NULL, worker_main, z);
		if (err) {
			z->worker_started = false;
			z->opts = NULL;
			natsOptions_Destroy(o);
			z->refs--;
			zc_release(z);
			zm_err_set("cannot start the NATS worker thread");
			return zm_push_error(L, err);
		}
		c = lua_newuserdatauv(L, sizeof(*c), 0);
		memset(c, 0, sizeof(*c));
		c->z = z;
		luaL_setmetatable(L, CONN_MT);
		return 1;
	}
	s = natsConnection_Connect(&z->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		int n = push_failure(L, s, 0);

		if (z->nc) {
			natsConnection_Destroy(z->nc);
			z->nc = NULL;
		} else {
			z->refs--;
		}
		zc_release(z);
		return n;
	}
	s = natsConnection_JetStream(&z->js, z->nc, NULL);
	if (s != NATS_OK) {
		int n = push_failure(L, s, 0);

		natsConnection_Close(z->nc);
		natsConnection_Destroy(z->nc);
		zc_release(z);
		return n;
	}
	post_state(z->nc, z, ST_CONNECTED);

	c = lua_newuserdatauv(L, sizeof(*c), 0);
	memset(c, 0, sizeof(*c));
	c->z = z;
	luaL_setmetatable(L, CONN_MT);
	return 1;
}

/* The connection, once the worker made it (NULL before). */
static natsConnection *get_nc(struct zc *z)
{
	natsConnection *nc;

	pthread_mutex_lock(&z->mu);
	nc = z->nc;
	pthread_mutex_unlock(&z->mu);
	return nc;
}

/* ---- close ---------------------------------------------------------- */

static void conn_close(struct conn *c)
{
	struct zc *z = c->z;
	struct lsub *ls, *next;

	if (c->closed)
		return;
	c->closed = true;
	pthread_mutex_lock(&z->mu);
	z->stop = true;
	pthread_cond_broadcast(&z->cv);
	pthread_mutex_unlock(&z->mu);
	/* Closing kicks out the worker's waiting request; a worker still
	 * connecting finishes that first (its connect timeout). */
	if (get_nc(z))
		natsConnection_Close(z->nc);
	if (z->worker_started)
		pthread_join(z->worker, NULL);
	if (z->nc)
		natsConnection_Close(z->nc);
	for (ls = c->subs; ls; ls = next) {
		next = ls->next;
		natsSubscription_Destroy(ls->sub);
		free(ls);
	}
	c->subs = NULL;
	jsCtx_Destroy(z->js);
	z->js = NULL;
	natsConnection_Destroy(z->nc);
	z->nc = NULL;
	zc_release(z);
}

static int c_close(lua_State *L)
{
	struct conn *c = luaL_checkudata(L, 1, CONN_MT);

	conn_close(c);
	return 0;
}

static int c_tostring(lua_State *L)
{
	struct conn *c = luaL_checkudata(L, 1, CONN_MT);

	if (c->closed)
		lua_pushliteral(L, "nats connection (closed)");
	else
		lua_pushfstring(L, "nats connection (%p)", (void *)c->z);
	return 1;
}

/* ---- simple methods ------------------------------------------------- */

static int c_fd(lua_State *L)
{
	struct conn *c = check_conn(L, 1);

	lua_pushinteger(L, c->z->efd);
	return 1;
}

static int c_wait(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	lua_Integer ms = luaL_checkinteger(L, 2);
	struct pollfd p = { .fd = c->z->efd, .events = POLLIN };
	int n;

	luaL_argcheck(L, ms >= 0 && ms <= 3600 * 1000, 2, "0..3600000 ms");
	do
		n = poll(&p, 1, (int)ms);
	while (n < 0 && errno == EINTR);
	lua_pushboolean(L, n > 0);
	return 1;
}

static int c_status(lua_State *L)
{
	struct conn *c = check_conn(L, 1);

	natsConnection *nc = get_nc(c->z);

	if (!nc) {
		lua_pushliteral(L, "connecting");
		return 1;
	}
	switch (natsConnection_Status(nc)) {
	case NATS_CONN_STATUS_CONNECTED:
		lua_pushliteral(L, "connected");
		break;
	case NATS_CONN_STATUS_CONNECTING:
		lua_pushliteral(L, "connecting");
		break;
	case NATS_CONN_STATUS_RECONNECTING:
		lua_pushliteral(L, "reconnecting");
		break;
	case NATS_CONN_STATUS_CLOSED:
		lua_pushliteral(L, "closed");
		break;
	case NATS_CONN_STATUS_DRAINING_SUBS:
	case NATS_CONN_STATUS_DRAINING_PUBS:
		lua_pushliteral(L, "draining");
		break;
	default:
		lua_pushliteral(L, "disconnected");
		break;
	}
	return 1;
}

static int c_url(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	char url[URL_LEN];

	natsConnection *nc = get_nc(c->z);

	if (nc && natsConnection_GetConnectedUrl(nc, url, sizeof(url)) == NATS_OK && url[0])
		lua_pushstring(L, url);
	else
		lua_pushnil(L);
	return 1;
}

static natsStatus set_headers(natsMsg *m, char **hk, char **hv, int nh)
{
	natsStatus s = NATS_OK;
	int i;

	for (i = 0; s == NATS_OK && i < nh; i++)
		s = natsMsgHeader_Set(m, hk[i], hv[i]);
	return s;
}

/* Copy the headers table at IDX (checked) into HK/HV; returns the count. */
static int copy_headers(lua_State *L, int idx, char **hk, char **hv)
{
	int n = 0;

	if (lua_type(L, idx) != LUA_TTABLE)
		return 0;
	lua_pushnil(L);
	while (lua_next(L, idx) && n < MAX_HEADERS) {
		hk[n] = strdup(lua_tostring(L, -2));
		hv[n] = strdup(lua_tostring(L, -1));
		n++;
		lua_pop(L, 1);
	}
	return n;
}

/* publish(subject, data [, headers]): core NATS, no acknowledgement. */
static int c_publish(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	const char *subject = subject_arg(L, 2, NULL, false, true);
	size_t len;
	const char *data = luaL_optlstring(L, 3, "", &len);
	char *hk[MAX_HEADERS], *hv[MAX_HEADERS];
	natsMsg *m = NULL;
	natsStatus s;
	int nh, i;

	luaL_argcheck(L, len <= INT32_MAX, 3, "too long");
	if (!lua_isnoneornil(L, 4)) {
		luaL_checktype(L, 4, LUA_TTABLE);
		lua_createtable(L, 0, 1);
		lua_pushvalue(L, 4);
		lua_setfield(L, -2, "headers");
		check_headers(L, lua_gettop(L), "headers");
		lua_pop(L, 1);
	}
	nh = copy_headers(L, 4, hk, hv);
	s = natsMsg_Create(&m, subject, NULL, data, (int)len);
	if (s == NATS_OK)
		s = set_headers(m, hk, hv, nh);
	if (s == NATS_OK)
		s = get_nc(c->z) ? natsConnection_PublishMsg(get_nc(c->z), m) : NATS_NOT_YET_CONNECTED;
	for (i = 0; i < nh; i++) {
		free(hk[i]);
		free(hv[i]);
	}
	natsMsg_Destroy(m);
	if (s != NATS_OK)
		return push_failure(L, s, 0);
	lua_pushboolean(L, 1);
	return 1;
}

static int c_subscribe(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	const char *subject = subject_arg(L, 2, NULL, true, true);
	struct zsub *zs = calloc(1, sizeof(*zs));
	struct lsub *ls = calloc(1, sizeof(*ls));
	natsStatus s;

	if (!zs || !ls) {
		free(zs);
		free(ls);
		return zm_push_error(L, ENOMEM);
	}
	zs->z = c->z;
	zs->sid = ls->sid = ++c->next_sid;
	/* The subscription's reference, given back when libnats is done. */
	zc_retain(c->z);
	s = get_nc(c->z) ? natsConnection_Subscribe(&ls->sub, get_nc(c->z), subject, on_msg, zs)
			 : NATS_NOT_YET_CONNECTED;
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(ls->sub, -1, -1);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(ls->sub, on_sub_complete, zs);
	if (s != NATS_OK) {
		int n = push_failure(L, s, 0);

		if (ls->sub) {
			natsSubscription_Unsubscribe(ls->sub);
			natsSubscription_Destroy(ls->sub);
		}
		/* Without a completion callback: ours to free. */
		zc_release(c->z);
		free(zs);
		free(ls);
		return n;
	}
	ls->next = c->subs;
	c->subs = ls;
	lua_pushinteger(L, ls->sid);
	return 1;
}

static int c_unsubscribe(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	lua_Integer sid = luaL_checkinteger(L, 2);
	struct lsub **pp, *ls;

	for (pp = &c->subs; (ls = *pp); pp = &ls->next) {
		if (ls->sid == sid) {
			*pp = ls->next;
			natsSubscription_Unsubscribe(ls->sub);
			/* Its closure goes in on_sub_complete. */
			natsSubscription_Destroy(ls->sub);
			free(ls);
			lua_pushboolean(L, 1);
			return 1;
		}
	}
	lua_pushboolean(L, 0);
	return 1;
}

/* ---- JetStream jobs ------------------------------------------------- */

static const char *const publish_fields[] = { "subject", "data", "headers", "timeout", NULL };
static const char *const get_last_fields[] = { "stream", "subject", "timeout", NULL };
static const char *const add_consumer_fields[] = {
	"stream", "name", "filter", "deliver", "policy", "heartbeat", "inactive",
	"headers_only", "timeout", NULL,
};
static const char *const delete_consumer_fields[] = { "stream", "name", "timeout", NULL };
static const char *const add_stream_fields[] = {
	"name", "subjects", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_age",
	"replicas", "memory", "allow_direct", "deny_delete", "deny_purge", "allow_rollup",
	"duplicates", "timeout", NULL,
};
static const char *const stream_info_fields[] = { "stream", "timeout", NULL };

/* The fields of each op, as core.nats.js_fields (for a fake to check). */
static const char *const *const op_fields[] = {
	publish_fields, get_last_fields, add_consumer_fields,
	delete_consumer_fields, add_stream_fields, stream_info_fields,
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Check the ARGS table at IDX for OP and build its job (NULL: ENOMEM).
 * Everything is checked before anything is allocated. */
static struct job *make_job(lua_State *L, int idx, enum jop op)
{
	static const char *const policies[] = { "all", "last", "new", "last_per_subject", NULL };
	static const jsDeliverPolicy policy_of[] = {
		js_DeliverAll, js_DeliverLast, js_DeliverNew, js_DeliverLastPerSubject,
	};
	const char *stream = NULL, *subject = NULL, *name = NULL, *deliver = NULL;
	const char *data = NULL, *policy;
	size_t dlen = 0;
	struct job *j;
	int64_t timeout;
	int i, k;

	switch (op) {
	case OP_PUBLISH:
		zm_check_fields(L, idx, publish_fields);
		subject = subject_arg(L, idx, "subject", false, true);
		if (lua_getfield(L, idx, "data") != LUA_TNIL) {
			if (lua_type(L, -1) != LUA_TSTRING)
				zm_field_error(L, idx, "data", "string expected");
			data = lua_tolstring(L, -1, &dlen);
			if (dlen > INT32_MAX)
				zm_field_error(L, idx, "data", "too long");
		}
		lua_pop(L, 1);
		check_headers(L, idx, "headers");
		break;
	case OP_GET_LAST:
		zm_check_fields(L, idx, get_last_fields);
		stream = name_field(L, idx, "stream", true);
		subject = subject_arg(L, idx, "subject", false, true);
		break;
	case OP_ADD_CONSUMER:
		zm_check_fields(L, idx, add_consumer_fields);
		stream = name_field(L, idx, "stream", true);
		name = name_field(L, idx, "name", true);
		subject = subject_arg(L, idx, "filter", true, true);
		deliver = subject_arg(L, idx, "deliver", false, true);
		policy = zm_opt_string(L, idx, "policy", false);
		if (policy) {
			for (k = 0; policies[k] && strcmp(policies[k], policy); k++)
				;
			if (!policies[k])
				zm_field_error(L, idx, "policy", "all, last, new or last_per_subject");
		}
		zm_opt_int(L, idx, "heartbeat", 0, 0, 3600 * 1000);
		zm_opt_int(L, idx, "inactive", 0, 0, 24 * 3600 * 1000);
		zm_opt_bool(L, idx, "headers_only", 0);
		break;
	case OP_DELETE_CONSUMER:
		zm_check_fields(L, idx, delete_consumer_fields);
		stream = name_field(L, idx, "stream", true);
		name = name_field(L, idx, "name", true);
		break;
	case OP_ADD_STREAM:
		zm_check_fields(L, idx, add_stream_fields);
		stream = name_field(L, idx, "name", true);
		if (lua_getfield(L, idx, "subjects") != LUA_TTABLE)
			zm_field_error(L, idx, "subjects", "a list of subjects expected");
		k = (int)luaL_len(L, -1);
		if (k < 1 || k > MAX_SUBJECTS)
			zm_field_error(L, idx, "subjects", "must list 1..16 subjects");
		for (i = 1; i <= k; i++) {
			size_t n;
			const char *sj;

			if (lua_geti(L, -1, i) != LUA_TSTRING)
				zm_field_error(L, idx, "subjects", "subjects must be strings");
			sj = lua_tolstring(L, -1, &n);
			if (!subject_ok(sj, n, true) || strlen(sj) != n)
				zm_field_error(L, idx, "subjects", "not a NATS subject");
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
		zm_opt_int(L, idx, "max_msgs_per_subject", -1, -1, INT64_MAX);
		zm_opt_int(L, idx, "max_bytes", -1, -1, INT64_MAX);
		zm_opt_int(L, idx, "max_msg_size", -1, -1, INT32_MAX);
		zm_opt_int(L, idx, "max_age", 0, 0, INT64_MAX / 1000000);
		zm_opt_int(L, idx, "replicas", 1, 1, 5);
		zm_opt_int(L, idx, "duplicates", 0, 0, INT64_MAX / 1000000);
		zm_opt_bool(L, idx, "memory", 0);
		zm_opt_bool(L, idx, "allow_direct", 0);
		zm_opt_bool(L, idx, "deny_delete", 0);
		zm_opt_bool(L, idx, "deny_purge", 0);
		zm_opt_bool(L, idx, "allow_rollup", 0);
		break;
	case OP_STREAM_INFO:
		zm_check_fields(L, idx, stream_info_fields);
		stream = name_field(L, idx, "stream", true);
		break;
	default:
		break;
	}
	timeout = opt_ms(L, idx, "timeout", DEFAULT_TIMEOUT);

	j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->op = op;
	j->timeout = timeout;
	j->stream = dup_or_null(stream);
	j->subject = dup_or_null(subject);
	j->name = dup_or_null(name);
	j->deliver = dup_or_null(deliver);
	if (data) {
		j->data = malloc(dlen ? dlen : 1);
		if (j->data)
			memcpy(j->data, data, dlen);
		j->dlen = (int)dlen;
	}
	if (op == OP_PUBLISH) {
		lua_getfield(L, idx, "headers");
		j->nh = copy_headers(L, lua_gettop(L), j->hk, j->hv);
		lua_pop(L, 1);
	}
	if (op == OP_ADD_CONSUMER) {
		policy = zm_opt_string(L, idx, "policy", false);
		j->policy = js_DeliverAll;
		for (k = 0; policy && policies[k]; k++)
			if (!strcmp(policies[k], policy))
				j->policy = policy_of[k];
		j->heartbeat = zm_opt_int(L, idx, "heartbeat", 0, 0, 3600 * 1000);
		j->inactive = zm_opt_int(L, idx, "inactive", 0, 0, 24 * 3600 * 1000);
		j->headers_only = zm_opt_bool(L, idx, "headers_only", 0);
	}
	if (op == OP_ADD_STREAM) {
		lua_getfield(L, idx, "subjects");
		j->nsubjects = (int)luaL_len(L, -1);
		for (i = 0; i < j->nsubjects; i++) {
			lua_geti(L, -1, i + 1);
			j->subjects[i] = strdup(lua_tostring(L, -1));
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
		j->per_subject = zm_opt_int(L, idx, "max_msgs_per_subject", -1, -1, INT64_MAX);
		j->max_bytes = zm_opt_int(L, idx, "max_bytes", -1, -1, INT64_MAX);
		j->max_msg_size = (int32_t)zm_opt_int(L, idx, "max_msg_size", -1, -1, INT32_MAX);
		j->max_age = zm_opt_int(L, idx, "max_age", 0, 0, INT64_MAX / 1000000);
		j->replicas = zm_opt_int(L, idx, "replicas", 1, 1, 5);
		j->duplicates = zm_opt_int(L, idx, "duplicates", 0, 0, INT64_MAX / 1000000);
		j->memory = zm_opt_bool(L, idx, "memory", 0);
		j->allow_direct = zm_opt_bool(L, idx, "allow_direct", 0);
		j->deny_delete = zm_opt_bool(L, idx, "deny_delete", 0);
		j->deny_purge = zm_opt_bool(L, idx, "deny_purge", 0);
		j->allow_rollup = zm_opt_bool(L, idx, "allow_rollup", 0);
	}
	return j;
}

/* Was every allocation of J made? */
static bool job_complete(const struct job *j)
{
	int i;

	if ((j->op == OP_PUBLISH && !j->subject) ||
	    ((j->op == OP_GET_LAST) && (!j->stream || !j->subject)) ||
	    (j->op == OP_ADD_CONSUMER && (!j->stream || !j->name || !j->subject || !j->deliver)) ||
	    (j->op == OP_DELETE_CONSUMER && (!j->stream || !j->name)) ||
	    (j->op == OP_ADD_STREAM && !j->stream) ||
	    (j->op == OP_STREAM_INFO && !j->stream))
		return false;
	if (j->dlen && !j->data)
		return false;
	for (i = 0; i < j->nh; i++)
		if (!j->hk[i] || !j->hv[i])
			return false;
	for (i = 0; i < j->nsubjects; i++)
		if (!j->subjects[i])
			return false;
	return true;
}

/* Run J against JS. Any thread; no Lua. */
static void run_job(jsCtx *js, struct job *j)
{
	jsOptions o;
	natsStatus s = NATS_OK;

	jsOptions_Init(&o);
	o.Wait = j->timeout;
	if (!js) {
		j->st = NATS_CONNECTION_CLOSED;
		j->err = strdup("not connected to NATS");
		return;
	}
	switch (j->op) {
	case OP_PUBLISH: {
		jsPubOptions po;
		natsMsg *m = NULL;

		jsPubOptions_Init(&po);
		po.MaxWait = j->timeout;
		s = natsMsg_Create(&m, j->subject, NULL, j->data, j->dlen);
		if (s == NATS_OK)
			s = set_headers(m, j->hk, j->hv, j->nh);
		if (s == NATS_OK)
			s = js_PublishMsg(&j->pa, js, m, &po, &j->jerr);
		natsMsg_Destroy(m);
		break;
	}
	case OP_GET_LAST: {
		jsDirectGetMsgOptions dgo;

		jsDirectGetMsgOptions_Init(&dgo);
		dgo.LastBySubject = j->subject;
		s = js_DirectGetMsg(&j->msg, js, j->stream, &o, &dgo);
		break;
	}
	case OP_ADD_CONSUMER: {
		jsConsumerConfig cc;

		jsConsumerConfig_Init(&cc);
		cc.Name = j->name;
		cc.FilterSubject = j->subject;
		cc.DeliverSubject = j->deliver;
		cc.DeliverPolicy = j->policy;
		cc.AckPolicy = js_AckNone;
		cc.ReplayPolicy = js_ReplayInstant;
		cc.Heartbeat = j->heartbeat * 1000000;
		cc.InactiveThreshold = j->inactive * 1000000;
		cc.HeadersOnly = j->headers_only;
		cc.MemoryStorage = true;
		cc.Replicas = 1;
		s = js_AddConsumer(&j->ci, js, j->stream, &cc, &o, &j->jerr);
		break;
	}
	case OP_DELETE_CONSUMER:
		s = js_DeleteConsumer(js, j->stream, j->name, &o, &j->jerr);
		break;
	case OP_ADD_STREAM: {
		jsStreamConfig sc;

		jsStreamConfig_Init(&sc);
		sc.Name = j->stream;
		sc.Subjects = (const char **)j->subjects;
		sc.SubjectsLen = j->nsubjects;
		sc.Retention = js_LimitsPolicy;
		sc.MaxMsgsPerSubject = j->per_subject;
		sc.MaxBytes = j->max_bytes;
		sc.MaxMsgSize = j->max_msg_size;
		sc.MaxAge = j->max_age * 1000000;
		sc.Replicas = j->replicas;
		sc.Duplicates = j->duplicates * 1000000;
		sc.Storage = j->memory ? js_MemoryStorage : js_FileStorage;
		sc.Discard = js_DiscardNew;
		sc.AllowDirect = j->allow_direct;
		sc.DenyDelete = j->deny_delete;
		sc.DenyPurge = j->deny_purge;
		sc.AllowRollup = j->allow_rollup;
		s = js_AddStream(&j->si, js, &sc, &o, &j->jerr);
		break;
	}
	case OP_STREAM_INFO:
		s = js_GetStreamInfo(&j->si, js, j->stream, &o, &j->jerr);
		break;
	default:
		s = NATS_INVALID_ARG;
		break;
	}
	j->st = s;
	if (s != NATS_OK)
		j->err = error_text(s);
}

/* The background connect, on the worker (no Lua waits for it). */
static void worker_connect(struct zc *z)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsStatus s = natsConnection_Connect(&nc, z->opts);
	struct ev *e;

	natsOptions_Destroy(z->opts);
	z->opts = NULL;
	if (nc && natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		js = NULL;
	pthread_mutex_lock(&z->mu);
	z->nc = nc;
	z->js = js;
	pthread_mutex_unlock(&z->mu);
	if (s == NATS_OK) {
		post_state(nc, z, ST_CONNECTED);
	} else if (!nc) {
		/* No retries either (a bad option): say so, and close. */
		e = new_ev(EV_ERROR);
		if (e) {
			e->text = error_text(s);
			push_ev(z, e);
		}
		e = new_ev(EV_STATE);
		if (e) {
			e->state = ST_CLOSED;
			push_ev(z, e);
		}
		zc_release(z);	/* the callbacks' reference */
	}
}

static void *worker_main(void *arg)
{
	struct zc *z = arg;
	struct job *j;
	struct ev *e;

	if (z->opts)
		worker_connect(z);
	for (;;) {
		pthread_mutex_lock(&z->mu);
		while (!z->stop && !z->jhead)
			pthread_cond_wait(&z->cv, &z->mu);
		if (z->stop) {
			pthread_mutex_unlock(&z->mu);
			break;
		}
		j = z->jhead;
		z->jhead = j->next;
		if (!z->jhead)
			z->jtail = NULL;
		j->next = NULL;
		pthread_mutex_unlock(&z->mu);
		run_job(z->js, j);
		e = new_ev(EV_DONE);
		if (!e) {
			job_free(j);
			continue;
		}
		e->job = j;
		push_ev(z, e);
	}
	/* Our own libnats thread-local storage goes with us. */
	nats_ReleaseThreadMemory();
	return NULL;
}

static void push_headers(lua_State *L, natsMsg *m)
{
	const char **keys = NULL;
	int n = 0, i;

	lua_newtable(L);
	if (natsMsgHeader_Keys(m, &keys, &n) != NATS_OK)
		return;
	for (i = 0; i < n; i++) {
		const char *v = NULL;

		if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK && v) {
			lua_pushstring(L, v);
			lua_setfield(L, -2, keys[i]);
		}
	}
	free((void *)keys);
}

static void push_msg(lua_State *L, natsMsg *m)
{
	const char *reply = natsMsg_GetReply(m);

	lua_pushstring(L, natsMsg_GetSubject(m));
	lua_setfield(L, -2, "subject");
	if (reply) {
		lua_pushstring(L, reply);
		lua_setfield(L, -2, "reply");
	}
	lua_pushlstring(L, natsMsg_GetData(m) ? natsMsg_GetData(m) : "",
			(size_t)natsMsg_GetDataLength(m));
	lua_setfield(L, -2, "data");
	push_headers(L, m);
	lua_setfield(L, -2, "headers");
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, const char *k, bool v)
{
	lua_pushboolean(L, v);
	lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
	if (!v)
		return;
	lua_pushstring(L, v);
	lua_setfield(L, -2, k);
}

static void push_stream_info(lua_State *L, jsStreamInfo *si)
{
	jsStreamConfig *cfg = si->Config;
	int i;

	lua_newtable(L);
	if (cfg) {
		set_str(L, "name", cfg->Name);
		lua_createtable(L, cfg->SubjectsLen, 0);
		for (i = 0; i < cfg->SubjectsLen; i++) {
			lua_pushstring(L, cfg->Subjects[i]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, -2, "subjects");
		set_int(L, "replicas", cfg->Replicas);
		set_int(L, "max_msgs_per_subject", cfg->MaxMsgsPerSubject);
		set_int(L, "max_msg_size", cfg->MaxMsgSize);
		set_int(L, "max_bytes", cfg->MaxBytes);
		set_bool(L, "allow_direct", cfg->AllowDirect);
		set_bool(L, "deny_delete", cfg->DenyDelete);
		set_bool(L, "deny_purge", cfg->DenyPurge);
		set_bool(L, "allow_rollup", cfg->AllowRollup);
		set_bool(L, "memory", cfg->Storage == js_MemoryStorage);
	}
	set_int(L, "messages", (lua_Integer)si->State.Msgs);
	set_int(L, "bytes", (lua_Integer)si->State.Bytes);
	set_int(L, "first_seq", (lua_Integer)si->State.FirstSeq);
	set_int(L, "last_seq", (lua_Integer)si->State.LastSeq);
	set_int(L, "consumers", (lua_Integer)si->State.Consumers);
	if (si->Cluster) {
		lua_newtable(L);
		set_str(L, "name", si->Cluster->Name);
		set_str(L, "leader", si->Cluster->Leader);
		lua_createtable(L, si->Cluster->ReplicasLen, 0);
		for (i = 0; i < si->Cluster->ReplicasLen; i++) {
			jsPeerInfo *p = si->Cluster->Replicas[i];

			lua_newtable(L);
			set_str(L, "name", p->Name);
			set_bool(L, "current", p->Current);
			set_bool(L, "offline", p->Offline);
			lua_pushnumber(L, (lua_Number)p->Active / 1e9);
			lua_setfield(L, -2, "active");
			set_int(L, "lag", (lua_Integer)p->Lag);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, -2, "replicas");
		lua_setfield(L, -2, "cluster");
	}
}

/* Push J's result (a table), or its failure (nil, err, ename[, code]). */
static int push_job_result(lua_State *L, struct job *j)
{
	if (j->st != NATS_OK)
		return push_nats_error(L, j->st, j->jerr, j->err);
	lua_newtable(L);
	switch (j->op) {
	case OP_PUBLISH:
		set_str(L, "stream", j->pa->Stream);
		set_int(L, "seq", (lua_Integer)j->pa->Sequence);
		set_bool(L, "duplicate", j->pa->Duplicate);
		break;
	case OP_GET_LAST:
		push_msg(L, j->msg);
		set_int(L, "seq", (lua_Integer)natsMsg_GetSequence(j->msg));
		lua_pushnumber(L, (lua_Number)natsMsg_GetTime(j->msg) / 1e9);
		lua_setfield(L, -2, "time");
		break;
	case OP_ADD_CONSUMER:
		set_str(L, "name", j->ci->Name);
		set_int(L, "num_pending", (lua_Integer)j->ci->NumPending);
		set_int(L, "delivered_consumer_seq", (lua_Integer)j->ci->Delivered.Consumer);
		set_int(L, "delivered_stream_seq", (lua_Integer)j->ci->Delivered.Stream);
		break;
	case OP_DELETE_CONSUMER:
		set_bool(L, "deleted", true);
		break;
	case OP_ADD_STREAM:
	case OP_STREAM_INFO:
		lua_pop(L, 1);
		push_stream_info(L, j->si);
		break;
	default:
		break;
	}
	return 1;
}

static enum jop check_op(lua_State *L, int idx)
{
	return (enum jop)luaL_checkoption(L, idx, NULL, op_names);
}

/* js(op, args): synchronous, on the caller's thread. */
static int c_js(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	enum jop op = check_op(L, 2);
	struct job *j;
	int n;

	j = make_job(L, 3, op);
	if (!j || !job_complete(j)) {
		job_free(j);
		return zm_push_error(L, ENOMEM);
	}
	get_nc(c->z);	/* (the worker's writes to js are seen after its lock) */
	run_job(c->z->js, j);
	n = push_job_result(L, j);
	job_free(j);
	return n;
}

/* js_async(op, args) -> id: on the worker; the result is a "done" event. */
static int c_js_async(lua_State *L)
{
	struct conn *c = check_conn(L, 1);
	enum jop op = check_op(L, 2);
	struct zc *z = c->z;
	struct job *j;

	j = make_job(L, 3, op);
	if (!j || !job_complete(j)) {
		job_free(j);
		return zm_push_error(L, ENOMEM);
	}
	j->id = ++c->next_id;
	pthread_mutex_lock(&z->mu);
	if (!z->worker_started) {
		int err = pthread_create(&z->worker, NULL, worker_main, z);

		if (err) {
			pthread_mutex_unlock(&z->mu);
			job_free(j);
			zm_err_clear();
			zm_err_set("cannot start the NATS worker thread");
			return zm_push_error(L, err);
		}
		z->worker_started = true;
	}
	if (z->jtail)
		z->jtail->next = j;
	else
		z->jhead = j;
	z->jtail = j;
	pthread_cond_signal(&z->cv);
	pthread_mutex_unlock(&z->mu);
	lua_pushinteger(L, j->id);
	return 1;
}

static const char *state_name(enum state st)
{
	switch (st) {
	case ST_CONNECTED:
		return "connected";
	case ST_DISCONNECTED:
		return "disconnected";
	case ST_RECONNECTED:
		return "reconnected";
	default:
		return "closed";
	}
}

/* events() -> every event waiting, oldest first. */
static int c_events(lua_State *L)
{
	struct conn *c = luaL_checkudata(L, 1, CONN_MT);
	struct zc *z = c->z;
	struct ev *list, *e, *next;
	size_t dropped;
	uint64_t v;
	lua_Integer i = 0;
	ssize_t r;

	if (c->closed) {
		lua_newtable(L);
		return 1;
	}
	do
		r = read(z->efd, &v, sizeof(v));
	while (r < 0 && errno == EINTR);
	pthread_mutex_lock(&z->mu);
	list = z->head;
	z->head = z->tail = NULL;
	z->nev = 0;
	dropped = z->dropped;
	z->dropped = 0;
	pthread_mutex_unlock(&z->mu);

	lua_newtable(L);
	if (dropped) {
		lua_createtable(L, 0, 2);
		set_str(L, "kind", "overflow");
		set_int(L, "dropped", (lua_Integer)dropped);
		lua_rawseti(L, -2, ++i);
	}
	for (e = list; e; e = next) {
		next = e->next;
		/* Make room first: a raise (ENOMEM) must not leak the rest. */
		lua_checkstack(L, 8);
		lua_newtable(L);
		switch (e->type) {
		case EV_STATE:
			set_str(L, "kind", state_name(e->state));
			set_str(L, "url", e->text);
			break;
		case EV_ERROR:
			set_str(L, "kind", "error");
			set_str(L, "error", e->text);
			break;
		case EV_MSG:
			set_str(L, "kind", "msg");
			set_int(L, "sid", e->sid);
			push_msg(L, e->msg);
			break;
		case EV_DONE: {
			int n, top;

			set_str(L, "kind", "done");
			set_int(L, "id", e->job->id);
			set_str(L, "op", op_names[e->job->op]);
			top = lua_gettop(L);
			n = push_job_result(L, e->job);
			if (n == 1) {
				lua_setfield(L, top, "result");
				set_bool(L, "ok", true);
			} else {
				if (n == 4)
					lua_setfield(L, top, "code");
				lua_setfield(L, top, "ename");
				lua_setfield(L, top, "error");
				lua_pop(L, 1);	/* nil */
				set_bool(L, "ok", false);
			}
			break;
		}
		}
		lua_rawseti(L, -2, ++i);
		ev_free(e);
	}
	return 1;
}

/* ---- nkeys ---------------------------------------------------------- */

#define NKEY_PREFIX_SEED	(18 << 3)
#define NKEY_PREFIX_USER	(20 << 3)
#define SEED_RAW		(2 + 32 + 2)
#define PUB_RAW			(1 + 32 + 2)

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16(const unsigned char *p, size_t n)
{
	uint16_t crc = 0;
	size_t i;
	int b;

	for (i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

/* Base32 (RFC 4648, no padding) of N bytes into OUT (NUL-terminated). */
static void b32_encode(const unsigned char *in, size_t n, char *out)
{
	unsigned int buf = 0;
	int bits = 0;
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		buf = (buf << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32[(buf >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = b32[(buf << (5 - bits)) & 31];
	out[o] = 0;
}

/* Decode base32 text IN (length N) into OUT (at most MAX); -1 if bad. */
static int b32_decode(const char *in, size_t n, unsigned char *out, size_t max)
{
	unsigned int buf = 0;
	int bits = 0;
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		const char *p = strchr(b32, in[i]);

		if (!p || !in[i])
			return -1;
		buf = (buf << 5) | (unsigned int)(p - b32);
		bits += 5;
		if (bits >= 8) {
			if (o >= max)
				return -1;
			out[o++] = (unsigned char)(buf >> (bits - 8));
			bits -= 8;
		}
	}
	return (int)o;
}

static void encode_public(const unsigned char *pk, char *out)
{
	unsigned char raw[PUB_RAW];
	uint16_t crc;

	raw[0] = NKEY_PREFIX_USER;
	memcpy(raw + 1, pk, 32);
	crc = crc16(raw, 33);
	raw[33] = (unsigned char)(crc & 0xff);
	raw[34] = (unsigned char)(crc >> 8);
	b32_encode(raw, sizeof(raw), out);
}

static int seed_public(const char *path, char *pub, size_t publen)
{
	unsigned char *raw, pk[32], *sk;
	char *text, *line;
	int fd, n;
	ssize_t got;
	size_t len = 0;
	uint16_t crc;
	int err = 0;

	if (publen < 57)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		zm_err_set("%s", path);
		return -err;
	}
	text = sodium_malloc(4096);
	raw = sodium_malloc(SEED_RAW + 8);
	sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (!text || !raw || !sk) {
		close(fd);
		err = ENOMEM;
		goto out;
	}
	while (len < 4095 && (got = read(fd, text + len, 4095 - len)) > 0)
		len += (size_t)got;
	close(fd);
	text[len] = 0;
	/* The first line that starts with SU (a user seed), as libnats reads it. */
	for (line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		while (*line == ' ' || *line == '\t')
			line++;
		if (line[0] == 'S' && line[1] == 'U')
			break;
	}
	if (!line || !*line) {
		err = EINVAL;
		zm_err_set("%s: holds no NATS user seed (a line starting with SU)", path);
		goto out;
	}
	n = b32_decode(line, strcspn(line, " \t\r\n"), raw, SEED_RAW);
	if (n != SEED_RAW) {
		err = EINVAL;
		zm_err_set("%s: the seed is not base32 of %d bytes", path, SEED_RAW);
		goto out;
	}
	crc = crc16(raw, SEED_RAW - 2);
	if ((raw[0] & 248) != NKEY_PREFIX_SEED ||
	    (((raw[0] & 7) << 5) | ((raw[1] & 248) >> 3)) != NKEY_PREFIX_USER ||
	    raw[SEED_RAW - 2] != (crc & 0xff) || raw[SEED_RAW - 1] != (crc >> 8)) {
		err = EINVAL;
		zm_err_set("%s: not a valid NATS user seed (prefix or checksum)", path);
		goto out;
	}
	crypto_sign_seed_keypair(pk, sk, raw + 2);
	encode_public(pk, pub);
out:
	if (text)
		sodium_free(text);
	if (raw)
		sodium_free(raw);
	if (sk)
		sodium_free(sk);
	return -err;
}

/* nkey_create(path) -> public key: a new user seed in PATH (0600, never
 * overwriting); the seed never reaches Lua. */
static int l_nkey_create(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	unsigned char *raw, pk[32], *sk;
	char *text, pub[64];
	uint16_t crc;
	size_t len;
	ssize_t w;
	int fd, err = 0;

	zm_err_clear();
	if (sodium_init() < 0)
		return zm_push_error(L, EIO);
	raw = sodium_malloc(SEED_RAW);
	text = sodium_malloc(80);
	sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (!raw || !text || !sk) {
		err = ENOMEM;
		goto out;
	}
	raw[0] = NKEY_PREFIX_SEED | (NKEY_PREFIX_USER >> 5);
	raw[1] = (NKEY_PREFIX_USER & 31) << 3;
	randombytes_buf(raw + 2, 32);
	crc = crc16(raw, SEED_RAW - 2);
	raw[SEED_RAW - 2] = (unsigned char)(crc & 0xff);
	raw[SEED_RAW - 1] = (unsigned char)(crc >> 8);
	b32_encode(raw, SEED_RAW, text);
	len = strlen(text);
	text[len++] = '\n';
	crypto_sign_seed_keypair(pk, sk, raw + 2);
	encode_public(pk, pub);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = errno;
		zm_err_set("%s", path);
		goto out;
	}
	do
		w = write(fd, text, len);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)len || fsync(fd)) {
		err = w < 0 ? errno : EIO;
		close(fd);
		unlink(path);
		zm_err_set("writing %s", path);
		goto out;
	}
	close(fd);
out:
	if (raw)
		sodium_free(raw);
	if (text)
		sodium_free(text);
	if (sk)
		sodium_free(sk);
	if (err)
		return zm_push_error(L, err);
	lua_pushstring(L, pub);
	return 1;
}

static int l_nkey_public(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char pub[64];
	int err;

	zm_err_clear();
	if (sodium_init() < 0)
		return zm_push_error(L, EIO);
	err = seed_public(path, pub, sizeof(pub));
	if (err)
		return zm_push_error(L, err);
	lua_pushstring(L, pub);
	return 1;
}

/* ---- module --------------------------------------------------------- */

static const luaL_Reg conn_methods[] = {
	{ "fd", c_fd },
	{ "events", c_events },
	{ "wait", c_wait },
	{ "status", c_status },
	{ "url", c_url },
	{ "publish", c_publish },
	{ "subscribe", c_subscribe },
	{ "unsubscribe", c_unsubscribe },
	{ "js", c_js },
	{ "js_async", c_js_async },
	{ "close", c_close },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "connect", l_connect },
	{ "nkey_create", l_nkey_create },
	{ "nkey_public", l_nkey_public },
	{ NULL, NULL },
};

static size_t count(const char *const *v)
{
	size_t n = 0;

	while (v[n])
		n++;
	return n;
}

void zm_open_nats(lua_State *L)
{
	int k;

	if (luaL_newmetatable(L, CONN_MT)) {
		luaL_newlib(L, conn_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, c_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, c_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, c_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	zm_contract_add(L, contracts);
	luaL_newlib(L, funcs);
	lua_createtable(L, 0, OP__COUNT);
	for (k = 0; k < OP__COUNT; k++) {
		zm_push_strv(L, (char **)op_fields[k], count(op_fields[k]));
		lua_setfield(L, -2, op_names[k]);
	}
	lua_setfield(L, -2, "js_fields");
	lua_pushinteger(L, JSStreamWrongLastSequenceErr);
	lua_setfield(L, -2, "WRONG_LAST_SEQUENCE");
}
