// SPDX-License-Identifier: MIT
/*
 * core.http: HTTP/1.1 on a unix socket.
 *
 * The server is libmicrohttpd in external-loop epoll mode: the caller's
 * event loop (luv in the daemon) watches srv:fd() and calls srv:run() when
 * it is readable and when srv:timeout() expires. Handlers run inside
 * srv:run(), under lua_pcall; nothing raised there unwinds through MHD.
 * A handler that returns nothing suspends its connection; req:respond()
 * later resumes it. In external-loop mode MHD has no wake-up channel of
 * its own (0.9.75 drops MHD_USE_ITC without an internal thread), so
 * srv:fd() is our own epoll descriptor holding MHD's epoll descriptor and
 * an eventfd that req:respond() signals: the loop wakes and calls run().
 *
 *
 *   local poll, timer = uv.new_poll(srv:fd()), uv.new_timer()
 *   local function kick()
 *     srv:run()
 *     timer:stop()
 *     local ms = srv:timeout()   -- 0: MHD has work left over; nil: none
 *     if ms then timer:start(ms, 0, kick) end
 *   end
 *   poll:start("r", kick)
 *
 * Stop the poll before srv:close(): close() closes the descriptor.
 *
 * The client is libcurl, synchronous, over CURLOPT_UNIX_SOCKET_PATH.
 */
#include "common.h"
#include "../core/err.h"

#include <curl/curl.h>
#include <microhttpd.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef ZM_VERSION
#define ZM_VERSION "0.0.0-dev"
#endif

#define SERVER_MT	"zmesh.http.server"
#define REQUEST_MT	"zmesh.http.request"
#define CLIENT_MT	"zmesh.http.client"
/* Registry: weak-keyed table, request table -> its token. */
#define TOKENS_KEY	"zmesh.http.tokens"

#define SUN_PATH_LEN	sizeof(((struct sockaddr_un *)0)->sun_path)
/* An idle connection (nothing read or written) is closed after this. */
#define IDLE_TIMEOUT_S	60u
#define MAX_BODY_LIMIT	((lua_Integer)1 << 32)
#define DEFAULT_BODY	((lua_Integer)16 << 20)
/* The client refuses replies larger than this. */
#define MAX_REPLY	((size_t)1 << 30)
/* close(): run MHD at most this often to send the 503s. */
#define CLOSE_FLUSH	8

struct srv;
struct token;

enum cstate {
	C_UPLOAD,	/* headers in, body arriving */
	C_HANDLER,	/* the handler runs */
	C_SUSPENDED,	/* waiting for req:respond() */
	C_RESUMED,	/* answered (or abandoned), waiting for MHD */
};

/* One request, from its headers until MHD reports it completed. */
struct conn {
	struct srv *s;
	struct MHD_Connection *mc;
	struct conn *prev, *next;
	enum cstate state;
	char *body;
	size_t len, cap;
	bool too_big;
	bool abandon;			/* resumed without a reply: close */
	struct MHD_Response *resp;	/* the reply req:respond() made */
	unsigned int status;
	int ref;			/* registry ref of the req while suspended */
	struct token *tok;		/* attached while its req is alive */
	struct ucred cred;
	bool have_cred;
};

/* What req:respond() finds through the tokens table. */
struct token {
	struct conn *c;		/* NULL once answered, gone or closed */
	bool answered;
};

struct srv {
	struct MHD_Daemon *d;
	int lfd;		/* ours until MHD_start_daemon takes it */
	int pfd;		/* epoll: MHD's epoll fd and wake */
	int wake;		/* eventfd: a resumed request waits */
	char path[SUN_PATH_LEN];
	dev_t dev;
	ino_t ino;
	bool made;		/* the socket file is ours to unlink */
	size_t max_body;
	lua_State *L;		/* the state inside run() or close() */
	int self;		/* the server's stack index in that frame */
	bool in_run, closing, close_pending;
	struct conn *conns;
};

/* ---- argument checks ---------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s, size_t n)
{
	size_t i;

	if (!n)
		return false;
	for (i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return true;
}

/* A header value: no CR, LF or NUL. */
static bool is_field_value(const char *s, size_t n)
{
	return !memchr(s, '\r', n) && !memchr(s, '\n', n) && !memchr(s, '\0', n);
}

/*
 * Check a headers table at idx (nil allowed): NULL, or what is wrong
 * (pushed). Values are strings or integral numbers. When reply is set, names MHD sets itself are
 * refused and values must not be empty (MHD refuses those).
 */
static const char *headers_problem(lua_State *L, int idx, bool reply)
{
	if (lua_isnoneornil(L, idx))
		return NULL;
	if (lua_type(L, idx) != LUA_TTABLE)
		return lua_pushfstring(L, "headers: table expected, got %s",
				       luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *k, *v;
		size_t kn, vn;

		if (lua_type(L, -2) != LUA_TSTRING)
			return lua_pushfstring(L, "headers: names must be strings, got %s",
					       luaL_typename(L, -2));
		k = lua_tolstring(L, -2, &kn);
		if (!is_token(k, kn))
			return lua_pushfstring(L, "headers: '%s' is not a header name", k);
		if (reply && (!strcasecmp(k, "content-length") ||
			      !strcasecmp(k, "transfer-encoding")))
			return lua_pushfstring(L, "headers: '%s' is set by the server", k);
		if (lua_type(L, -1) == LUA_TNUMBER) {
			int isint;

			lua_tointegerx(L, -1, &isint);
			if (!isint)
				return lua_pushfstring(L, "headers: value of '%s' is not an integer", k);
			lua_pop(L, 1);
			continue;
		}
		if (lua_type(L, -1) != LUA_TSTRING)
			return lua_pushfstring(L, "headers: value of '%s' must be a string or an integer, got %s",
					       k, luaL_typename(L, -1));
		v = lua_tolstring(L, -1, &vn);
		if (!is_field_value(v, vn))
			return lua_pushfstring(L, "headers: value of '%s' contains CR, LF or NUL", k);
		if (reply && !vn)
			return lua_pushfstring(L, "headers: value of '%s' is empty", k);
		lua_pop(L, 1);
	}
	return NULL;
}

/*
 * A reply at base: status, body, headers. argn > 0: raise as argument
 * errors of a function whose first reply argument is #argn; 0: raise as a
 * bad reply of the handler.
 */
static void check_reply(lua_State *L, int base, int argn)
{
	const char *why = NULL;
	lua_Integer st;
	int isnum;

	st = lua_tointegerx(L, base, &isnum);
	if (lua_type(L, base) != LUA_TNUMBER || !isnum || st < 200 || st > 599) {
		why = lua_pushfstring(L, "status must be an integer 200..599, got %s",
				      lua_type(L, base) == LUA_TNUMBER ?
				      lua_tostring(L, base) : luaL_typename(L, base));
	} else if (!lua_isnoneornil(L, base + 1) &&
		   lua_type(L, base + 1) != LUA_TSTRING) {
		why = lua_pushfstring(L, "body must be a string, got %s",
				      luaL_typename(L, base + 1));
		argn = argn ? argn + 1 : 0;
	} else if ((why = headers_problem(L, base + 2, true))) {
		argn = argn ? argn + 2 : 0;
	}
	if (!why)
		return;
	if (argn)
		luaL_argerror(L, argn, why);
	luaL_error(L, "bad reply from the handler: %s", why);
}

/* The value at -1 (string or integer, checked) as text. */
static const char *header_text(lua_State *L, char *buf, size_t len)
{
	if (lua_type(L, -1) == LUA_TSTRING)
		return lua_tostring(L, -1);
	snprintf(buf, len, "%lld", (long long)lua_tointeger(L, -1));
	return buf;
}

/*
 * Build the MHD response of a checked reply at base. Nothing here raises.
 * NULL on failure: *refused names the header MHD refused (its key is left
 * on the stack), or is NULL when out of memory.
 */
static struct MHD_Response *make_reply(lua_State *L, int base,
				       unsigned int *status,
				       const char **refused)
{
	struct MHD_Response *r;
	const char *body = "";
	size_t len = 0;
	char num[32];

	*refused = NULL;
	*status = (unsigned int)lua_tointeger(L, base);
	if (lua_type(L, base + 1) == LUA_TSTRING)
		body = lua_tolstring(L, base + 1, &len);
	r = MHD_create_response_from_buffer(len, (void *)body,
					    MHD_RESPMEM_MUST_COPY);
	if (!r || lua_type(L, base + 2) != LUA_TTABLE)
		return r;
	lua_pushnil(L);
	while (lua_next(L, base + 2)) {
		const char *k = lua_tostring(L, -2);

		if (MHD_add_response_header(r, k, header_text(L, num, sizeof(num)))
		    == MHD_NO) {
			lua_pop(L, 1);
			*refused = k;
			MHD_destroy_response(r);
			return NULL;
		}
		lua_pop(L, 1);
	}
	return r;
}

/* ---- server: fixed replies ---------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *mc, unsigned int status,
			     struct MHD_Response *r)
{
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	ret = MHD_queue_response(mc, status, r);
	MHD_destroy_response(r);
	return ret;
}

static struct MHD_Response *fixed_reply(const char *json)
{
	struct MHD_Response *r;

	r = MHD_create_response_from_buffer(strlen(json), (void *)json,
					    MHD_RESPMEM_MUST_COPY);
	if (r && MHD_add_response_header(r, "Content-Type",
					 "application/json") == MHD_NO) {
		MHD_destroy_response(r);
		r = NULL;
	}
	return r;
}

static enum MHD_Result queue_fixed(struct MHD_Connection *mc,
				   unsigned int status, const char *json)
{
	return queue(mc, status, fixed_reply(json));
}

static enum MHD_Result queue_413(struct srv *s, struct MHD_Connection *mc)
{
	char json[96];

	snprintf(json, sizeof(json),
		 "{\"error\":\"request body over %zu bytes\",\"field\":\"body\"}",
		 s->max_body);
	return queue_fixed(mc, 413, json);
}

#define JSON_500 "{\"error\":\"internal error in the request handler\"}"
#define JSON_503 "{\"error\":\"server closing\"}"

/* ---- server: requests and tokens ---------------------------------- */

static void detach(struct conn *c, bool answered)
{
	if (c->tok) {
		c->tok->c = NULL;
		c->tok->answered = answered;
		c->tok = NULL;
	}
}

static void drop_ref(lua_State *L, struct conn *c)
{
	if (c->ref != LUA_NOREF && L) {
		luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
		c->ref = LUA_NOREF;
	}
}

/* A suspended request leaves the waiting state: MHD takes it back. */
static void resume(lua_State *L, struct conn *c, bool answered)
{
	c->state = C_RESUMED;
	detach(c, answered);
	drop_ref(L, c);
	MHD_resume_connection(c->mc);
	if (c->s->wake >= 0) {
		uint64_t one = 1;

		if (write(c->s->wake, &one, sizeof(one)) < 0) {
			/* EAGAIN: the counter is full, it is signalled. */
		}
	}
}

static void conn_free(struct conn *c)
{
	struct srv *s = c->s;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->resp)
		MHD_destroy_response(c->resp);
	free(c->body);
	free(c);
}

/* MHD is done with a request (answered, client gone, daemon stopping). */
static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct srv *s = cls;
	struct conn *c = *con_cls;

	(void)mc;
	(void)toe;
	if (!c)
		return;
	*con_cls = NULL;
	detach(c, c->tok && c->tok->answered);
	drop_ref(s->L, c);
	conn_free(c);
}

/* The client hung up (it cannot be seen while MHD does not poll it). */
static bool client_gone(struct conn *c)
{
	const union MHD_ConnectionInfo *ci;
	struct pollfd p = { .events = POLLIN | POLLRDHUP };

	ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return true;
	p.fd = ci->connect_fd;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

struct kv {
	const char *k, *v;
	size_t kn, vn;
};

struct kvs {
	struct kv *a;
	size_t n, max;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind,
			       const char *k, size_t kn, const char *v,
			       size_t vn)
{
	struct kvs *x = cls;

	(void)kind;
	if (x->n >= x->max)
		return MHD_NO;
	x->a[x->n++] = (struct kv){ k, v ? v : "", kn, v ? vn : 0 };
	return MHD_YES;
}

/* Push MHD's values of one kind as a table; headers lower-cased, repeats
 * joined with ", "; query repeats: the last one. */
static void push_values(lua_State *L, struct MHD_Connection *mc,
			enum MHD_ValueKind kind, bool lower)
{
	struct kvs x = { NULL, 0, 0 };
	int n = MHD_get_connection_values_n(mc, kind, NULL, NULL);
	size_t i, j;

	lua_createtable(L, 0, n > 0 ? n : 0);
	if (n <= 0)
		return;
	x.max = (size_t)n;
	x.a = lua_newuserdatauv(L, x.max * sizeof(*x.a), 0);
	MHD_get_connection_values_n(mc, kind, collect, &x);
	for (i = 0; i < x.n; i++) {
		if (lower) {
			luaL_Buffer b;
			char *p = luaL_buffinitsize(L, &b, x.a[i].kn);

			for (j = 0; j < x.a[i].kn; j++) {
				char ch = x.a[i].k[j];

				p[j] = (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch;
			}
			luaL_pushresultsize(&b, x.a[i].kn);
		} else {
			lua_pushlstring(L, x.a[i].k, x.a[i].kn);
		}
		lua_pushvalue(L, -1);
		if (lower && lua_rawget(L, -4) == LUA_TSTRING) {
			lua_pushliteral(L, ", ");
			lua_pushlstring(L, x.a[i].v, x.a[i].vn);
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushlstring(L, x.a[i].v, x.a[i].vn);
		}
		lua_rawset(L, -4);
	}
	lua_pop(L, 1);
}

enum outcome { O_REPLY, O_SUSPEND, O_RESPONDED };

struct call {
	struct conn *c;
	const char *url, *method;
	struct MHD_Response *resp;
	unsigned int status;
	enum outcome outcome;
};

/* Build the req table (with its token) for a call; leaves it on top. */
static void push_req(lua_State *L, struct call *a)
{
	struct conn *c = a->c;
	struct token *t;

	lua_createtable(L, 0, 7);
	lua_pushstring(L, a->method);
	lua_setfield(L, -2, "method");
	lua_pushstring(L, a->url);
	lua_setfield(L, -2, "path");
	push_values(L, c->mc, MHD_GET_ARGUMENT_KIND, false);
	lua_setfield(L, -2, "query");
	push_values(L, c->mc, MHD_HEADER_KIND, true);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, c->body ? c->body : "", c->len);
	lua_setfield(L, -2, "body");
	if (c->have_cred) {
		lua_createtable(L, 0, 3);
		lua_pushinteger(L, c->cred.pid);
		lua_setfield(L, -2, "pid");
		lua_pushinteger(L, c->cred.uid);
		lua_setfield(L, -2, "uid");
		lua_pushinteger(L, c->cred.gid);
		lua_setfield(L, -2, "gid");
		lua_setfield(L, -2, "peer");
	}
	luaL_setmetatable(L, REQUEST_MT);

	t = lua_newuserdatauv(L, sizeof(*t), 0);
	t->c = NULL;
	t->answered = false;
	lua_getfield(L, LUA_REGISTRYINDEX, TOKENS_KEY);
	lua_pushvalue(L, -3);
	lua_pushvalue(L, -3);
	lua_rawset(L, -3);
	lua_pop(L, 2);
	/* Nothing raises from here: the conn may point at the token. */
	t->c = c;
	c->tok = t;
}

/* Protected: (call, handler) -> fills call. */
static int call_handler(lua_State *L)
{
	struct call *a = lua_touserdata(L, 1);
	const char *refused;
	int n;

	push_req(L, a);				/* 3: req */
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_call(L, 1, LUA_MULTRET);
	n = lua_gettop(L) - 3;
	if (a->c->resp) {
		a->outcome = O_RESPONDED;
		if (n > 0 && !lua_isnil(L, 4))
			return luaL_error(L, "the handler returned a reply after req:respond(); the first reply stands");
		return 0;
	}
	if (n == 0 || lua_isnil(L, 4)) {
		lua_pushvalue(L, 3);
		a->c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
		a->outcome = O_SUSPEND;
		return 0;
	}
	lua_settop(L, 6);
	check_reply(L, 4, 0);
	a->resp = make_reply(L, 4, &a->status, &refused);
	if (!a->resp) {
		if (refused)
			return luaL_error(L, "bad reply from the handler: headers: libmicrohttpd refuses '%s'",
					  refused);
		return luaL_error(L, "out of memory for the reply");
	}
	a->outcome = O_REPLY;
	return 0;
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (!msg) {
		if (luaL_callmeta(L, 1, "__tostring") &&
		    lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)",
					      luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* Protected: (on_error, method, url, msg) -> on_error("METHOD URL: msg"). */
static int report_p(lua_State *L)
{
	lua_pushvalue(L, 1);
	lua_pushfstring(L, "%s %s: %s", lua_tostring(L, 2), lua_tostring(L, 3),
			lua_tostring(L, 4));
	lua_call(L, 1, 0);
	return 0;
}

/* Hand msg (at -1) to on_error; an error in on_error itself is dropped. */
static void report(struct srv *s, lua_State *L, const char *method,
		   const char *url)
{
	int msg = lua_gettop(L);

	if (lua_getiuservalue(L, s->self, 2) != LUA_TFUNCTION) {
		lua_settop(L, msg);
		return;
	}
	lua_pushcfunction(L, report_p);
	lua_insert(L, -2);
	lua_pushstring(L, method);
	lua_pushstring(L, url);
	lua_pushvalue(L, msg);
	lua_pcall(L, 4, 0, 0);
	lua_settop(L, msg);
}

static enum MHD_Result run_handler(struct srv *s, struct conn *c,
				   const char *url, const char *method)
{
	lua_State *L = s->L;
	struct call a = { c, url, method, NULL, 0, O_REPLY };
	struct MHD_Response *r;
	int top, st;

	if (!L || !lua_checkstack(L, 16))
		return queue_fixed(c->mc, MHD_HTTP_INTERNAL_SERVER_ERROR, JSON_500);
	top = lua_gettop(L);
	c->state = C_HANDLER;
	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, call_handler);
	lua_pushlightuserdata(L, &a);
	lua_getiuservalue(L, s->self, 1);
	st = lua_pcall(L, 2, 0, top + 1);
	if (st != LUA_OK) {
		report(s, L, method, url);
		lua_settop(L, top);
		drop_ref(L, c);
		detach(c, true);
		c->state = C_RESUMED;
		if (c->resp) {
			r = c->resp;
			c->resp = NULL;
			return queue(c->mc, c->status, r);
		}
		return queue_fixed(c->mc, MHD_HTTP_INTERNAL_SERVER_ERROR, JSON_500);
	}
	lua_settop(L, top);
	switch (a.outcome) {
	case O_SUSPEND:
		c->state = C_SUSPENDED;
		MHD_suspend_connection(c->mc);
		return MHD_YES;
	case O_RESPONDED:
		detach(c, true);
		c->state = C_RESUMED;
		r = c->resp;
		c->resp = NULL;
		return queue(c->mc, c->status, r);
	case O_REPLY:
	default:
		detach(c, true);
		c->state = C_RESUMED;
		return queue(c->mc, a.status, a.resp);
	}
}

/* The first call of a request: its headers are in. */
static enum MHD_Result begin(struct srv *s, struct MHD_Connection *mc,
			     void **con_cls)
{
	const union MHD_ConnectionInfo *ci;
	const char *cl, *expect;
	socklen_t len;
	struct conn *c;

	c = calloc(1, sizeof(*c));
	if (!c)
		return MHD_NO;
	c->s = s;
	c->mc = mc;
	c->ref = LUA_NOREF;
	c->state = C_UPLOAD;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	*con_cls = c;

	ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	len = sizeof(c->cred);
	c->have_cred = ci && !getsockopt(ci->connect_fd, SOL_SOCKET,
					 SO_PEERCRED, &c->cred, &len);

	if (s->closing)
		return queue_fixed(mc, MHD_HTTP_SERVICE_UNAVAILABLE, JSON_503);
	cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && strtoull(cl, NULL, 10) > s->max_body) {
		c->too_big = true;
		/* A client waiting for "100 Continue" gets its 413 before it
		 * sends the body; any other client's body is read and thrown
		 * away, so that it sees the 413 rather than a reset. */
		expect = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_EXPECT);
		if (expect && !strcasecmp(expect, "100-continue"))
			return queue_413(s, mc);
	}
	return MHD_YES;
}

static enum MHD_Result upload(struct srv *s, struct conn *c,
			      const char *data, size_t n)
{
	if (c->too_big)
		return MHD_YES;
	if (n > s->max_body - c->len) {
		c->too_big = true;
		free(c->body);
		c->body = NULL;
		c->len = c->cap = 0;
		return MHD_YES;
	}
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		char *p;

		while (cap < c->len + n)
			cap *= 2;
		if (cap > s->max_body)
			cap = s->max_body;
		p = realloc(c->body, cap);
		if (!p)
			return MHD_NO;
		c->body = p;
		c->cap = cap;
	}
	memcpy(c->body + c->len, data, n);
	c->len += n;
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc,
				  const char *url, const char *method,
				  const char *version, const char *data,
				  size_t *size, void **con_cls)
{
	struct srv *s = cls;
	struct conn *c = *con_cls;
	struct MHD_Response *r;

	(void)version;
	if (!c)
		return begin(s, mc, con_cls);
	if (*size) {
		enum MHD_Result ret = upload(s, c, data, *size);

		*size = 0;
		return ret;
	}
	if (c->state == C_RESUMED) {
		if (c->abandon || !c->resp)
			return MHD_NO;
		r = c->resp;
		c->resp = NULL;
		return queue(mc, c->status, r);
	}
	if (c->too_big)
		return queue_413(s, mc);
	if (s->closing)
		return queue_fixed(mc, MHD_HTTP_SERVICE_UNAVAILABLE, JSON_503);
	return run_handler(s, c, url, method);
}

/* ---- server: the socket ------------------------------------------- */

/*
 * Bind a listening AF_UNIX socket at path with mode, replacing a stale
 * socket file that nobody answers on; refuse when somebody does.
 */
static int make_socket(const char *path, mode_t mode, int *out,
		       struct stat *made)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r, e;

	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			zm_err_set("%s exists and is not a socket", path);
			return -EEXIST;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			e = errno;
			zm_err_set("socket");
			return -e;
		}
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		e = errno;
		close(fd);
		if (!r || e == EAGAIN || e == EINPROGRESS) {
			zm_err_set("another server answers on %s", path);
			return -EADDRINUSE;
		}
		if (e != ECONNREFUSED) {
			zm_err_set("probe %s", path);
			return -e;
		}
		if (unlink(path) && errno != ENOENT) {
			e = errno;
			zm_err_set("remove the stale socket %s", path);
			return -e;
		}
	} else if (errno != ENOENT) {
		e = errno;
		zm_err_set("stat %s", path);
		return -e;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		e = errno;
		zm_err_set("socket");
		return -e;
	}
	/* Born with the mode asked for: no window where it is more open. */
	old = umask(~mode & 0777);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	umask(old);
	if (r) {
		zm_err_set("bind %s", path);
		close(fd);
		return -e;
	}
	if (chmod(path, mode) || lstat(path, made) ||
	    listen(fd, SOMAXCONN)) {
		e = errno;
		zm_err_set("listen on %s", path);
		unlink(path);
		close(fd);
		return -e;
	}
	*out = fd;
	return 0;
}

/* ---- server: the object ------------------------------------------- */

/* The descriptor the loop watches: MHD's epoll descriptor and the wake
 * eventfd, in one epoll set (level-triggered). */
static int watch(struct srv *s)
{
	struct epoll_event ev = { .events = EPOLLIN };
	const union MHD_DaemonInfo *di;
	int e;

	di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di) {
		zm_err_set("libmicrohttpd has no epoll descriptor");
		return -EIO;
	}
	s->pfd = epoll_create1(EPOLL_CLOEXEC);
	s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->pfd < 0 || s->wake < 0 ||
	    epoll_ctl(s->pfd, EPOLL_CTL_ADD, di->epoll_fd, &ev) ||
	    epoll_ctl(s->pfd, EPOLL_CTL_ADD, s->wake, &ev)) {
		e = errno;
		zm_err_set("epoll for %s", s->path);
		return -e;
	}
	return 0;
}

static struct srv *check_srv(lua_State *L, bool open)
{
	struct srv *s = luaL_checkudata(L, 1, SERVER_MT);

	if (open && (!s->d || s->closing))
		luaL_argerror(L, 1, "server is closed");
	return s;
}

static bool flush_pending(struct srv *s)
{
	struct conn *c;

	for (c = s->conns; c; c = c->next)
		if (c->state == C_RESUMED)
			return true;
	return false;
}

/* Close (idempotent). Inside run() (a handler called close) it waits for
 * run() to return. Waiting requests are answered 503 where MHD can still
 * send it at once; the rest are dropped. */
static void srv_close(lua_State *L, struct srv *s, int self)
{
	struct stat st;
	struct conn *c;
	int i;

	if (s->in_run) {
		/* New requests get 503 from now; the rest when run() ends. */
		s->closing = s->close_pending = true;
		return;
	}
	s->closing = true;
	if (s->d) {
		s->L = L;
		s->self = self;
		s->in_run = true;
		for (c = s->conns; c; c = c->next) {
			if (c->state != C_SUSPENDED)
				continue;
			c->resp = fixed_reply(JSON_503);
			c->status = MHD_HTTP_SERVICE_UNAVAILABLE;
			c->abandon = !c->resp;
			resume(L, c, false);
		}
		for (i = 0; i < CLOSE_FLUSH && flush_pending(s); i++)
			MHD_run_wait(s->d, 0);
		MHD_stop_daemon(s->d);	/* closes the listening socket */
		s->d = NULL;
		s->lfd = -1;
		s->in_run = false;
		s->L = NULL;
	}
	if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
	}
	if (s->pfd >= 0) {
		close(s->pfd);
		s->pfd = -1;
	}
	if (s->wake >= 0) {
		close(s->wake);
		s->wake = -1;
	}
	if (s->made) {
		if (!lstat(s->path, &st) && st.st_dev == s->dev &&
		    st.st_ino == s->ino)
			unlink(s->path);
		s->made = false;
	}
	s->close_pending = false;
}

/* close, __gc and __close */
static int s_close(lua_State *L)
{
	srv_close(L, check_srv(L, false), 1);
	return 0;
}

static int s_run(lua_State *L)
{
	struct srv *s = check_srv(L, true);
	enum MHD_Result ok;
	uint64_t n;

	if (s->in_run)
		return luaL_error(L, "srv:run() called from inside a handler");
	lua_settop(L, 1);
	s->L = L;
	s->self = 1;
	s->in_run = true;
	if (read(s->wake, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing was resumed. */
	}
	ok = MHD_run_wait(s->d, 0);
	s->in_run = false;
	s->L = NULL;
	if (s->close_pending) {
		srv_close(L, s, 1);
		ok = MHD_YES;
	}
	if (ok == MHD_NO) {
		zm_err_clear();
		zm_err_set("libmicrohttpd: run failed");
		return zm_push_error(L, EIO);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int s_fd(lua_State *L)
{
	lua_pushinteger(L, check_srv(L, true)->pfd);
	return 1;
}

/* nil: MHD wants no run() on a timer (also once closed, so that a loop
 * whose handler closed the server can ask). */
static int s_timeout(lua_State *L)
{
	struct srv *s = check_srv(L, false);
	MHD_UNSIGNED_LONG_LONG ms;

	if (!s->d || s->closing || MHD_get_timeout(s->d, &ms) == MHD_NO)
		lua_pushnil(L);
	else
		lua_pushinteger(L, ms > (MHD_UNSIGNED_LONG_LONG)INT32_MAX ?
				INT32_MAX : (lua_Integer)ms);
	return 1;
}

static int s_path(lua_State *L)
{
	struct srv *s = check_srv(L, false);

	lua_pushstring(L, s->path);
	return 1;
}

static int s_tostring(lua_State *L)
{
	struct srv *s = check_srv(L, false);

	if (!s->d || s->closing)
		lua_pushfstring(L, "zmesh.http.server (%s, closed)", s->path);
	else
		lua_pushfstring(L, "zmesh.http.server (%s)", s->path);
	return 1;
}

static const char *const listen_fields[] = {
	"path", "mode", "handler", "on_error", "max_body", NULL,
};

/* listen { path =, mode =, handler =, on_error =, max_body = } */
static int l_listen(lua_State *L)
{
	const char *const *fields = listen_fields;
	struct stat made, sock, now;
	const char *path;
	struct srv *s;
	lua_Integer mode, max_body;
	size_t len;
	int fd = -1, err;

	zm_check_fields(L, 1, fields);
	path = zm_opt_string(L, 1, "path", true);
	if (!path)		/* zm_opt_string raised; for the compiler */
		return 0;
	lua_getfield(L, 1, "path");
	lua_tolstring(L, -1, &len);
	lua_pop(L, 1);
	if (!len)
		zm_field_error(L, 1, "path", "empty");
	if (strlen(path) != len)
		zm_field_error(L, 1, "path", "contains a NUL byte");
	if (len >= SUN_PATH_LEN)
		zm_field_error(L, 1, "path",
			       lua_pushfstring(L, "longer than %d bytes",
					       (int)SUN_PATH_LEN - 1));
	mode = zm_opt_int(L, 1, "mode", 0600, 0, 0777);
	max_body = zm_opt_int(L, 1, "max_body", DEFAULT_BODY, 0, MAX_BODY_LIMIT);
	if (lua_getfield(L, 1, "handler") != LUA_TFUNCTION)
		zm_field_error(L, 1, "handler",
			       lua_pushfstring(L, "function expected, got %s",
					       luaL_typename(L, -1)));
	if (lua_getfield(L, 1, "on_error") != LUA_TFUNCTION &&
	    !lua_isnil(L, -1))
		zm_field_error(L, 1, "on_error",
			       lua_pushfstring(L, "function expected, got %s",
					       luaL_typename(L, -1)));

	s = lua_newuserdatauv(L, sizeof(*s), 2);
	memset(s, 0, sizeof(*s));
	s->lfd = s->pfd = s->wake = -1;
	memcpy(s->path, path, len + 1);
	s->max_body = (size_t)max_body;
	luaL_setmetatable(L, SERVER_MT);
	lua_rotate(L, -3, 1);		/* server, handler, on_error */
	lua_setiuservalue(L, -3, 2);
	lua_setiuservalue(L, -2, 1);

	zm_err_clear();
	err = make_socket(path, (mode_t)mode, &fd, &made);
	if (err)
		return zm_push_error(L, err);
	s->lfd = fd;
	if (fstat(fd, &sock))
		memset(&sock, 0, sizeof(sock));
	s->made = true;
	s->dev = made.st_dev;
	s->ino = made.st_ino;
	s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0,
				NULL, NULL, on_request, s,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
				MHD_OPTION_END);
	if (!s->d) {
		/* Some failure paths of MHD close the descriptor, some do
		 * not: close it only if it is still our socket. */
		if (fstat(fd, &now) || now.st_ino != sock.st_ino ||
		    now.st_dev != sock.st_dev)
			s->lfd = -1;
		srv_close(L, s, lua_gettop(L));
		zm_err_set("libmicrohttpd cannot serve %s", path);
		return zm_push_error(L, EIO);
	}
	err = watch(s);
	if (err) {
		srv_close(L, s, lua_gettop(L));
		return zm_push_error(L, err);
	}
	return 1;
}

/* ---- requests ----------------------------------------------------- */

/* The token of the req at 1, or NULL. */
static struct token *find_req(lua_State *L)
{
	struct token *t = NULL;

	if (lua_type(L, 1) == LUA_TTABLE) {
		lua_getfield(L, LUA_REGISTRYINDEX, TOKENS_KEY);
		lua_pushvalue(L, 1);
		lua_rawget(L, -2);
		t = lua_touserdata(L, -1);
		lua_pop(L, 2);
	}
	return t;
}

/* req:respond(status [, body [, headers]]) -> true, or false when the
 * client (or the server) went away meanwhile. */
static int r_respond(lua_State *L)
{
	struct token *t = find_req(L);
	struct MHD_Response *r;
	const char *refused;
	struct conn *c;

	if (!t)
		return luaL_argerror(L, 1, "request expected (a req given to a handler)");
	lua_settop(L, 4);
	check_reply(L, 2, 2);
	if (t->answered)
		return luaL_error(L, "request already answered");
	c = t->c;
	if (!c) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (c->state == C_SUSPENDED && client_gone(c)) {
		c->abandon = true;
		resume(L, c, false);
		lua_pushboolean(L, 0);
		return 1;
	}
	r = make_reply(L, 2, &c->status, &refused);
	if (!r) {
		if (refused)
			return luaL_argerror(L, 4,
					     lua_pushfstring(L, "headers: libmicrohttpd refuses '%s'",
							     refused));
		zm_err_clear();
		zm_err_set("reply");
		return zm_push_error(L, ENOMEM);
	}
	c->resp = r;
	t->answered = true;
	if (c->state == C_SUSPENDED)
		resume(L, c, true);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- client ------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
	bool over;
};

struct client {
	CURL *h;
	struct curl_slist *hdrs;
	char *url;
	struct buf body, head;
	char err[CURL_ERROR_SIZE];
};

static bool buf_add(struct buf *b, const char *p, size_t n)
{
	if (n > MAX_REPLY - b->len) {
		b->over = true;
		return false;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q)
			return false;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;

	return buf_add(b, p, size * n) ? size * n : 0;
}

/* Keep the header block of the last response only (a 100 Continue, or
 * an interim reply, comes first). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;

	if (size * n >= 5 && !memcmp(p, "HTTP/", 5))
		b->len = 0;
	return buf_add(b, p, size * n) ? size * n : 0;
}

static void client_free(struct client *cl)
{
	if (cl->h)
		curl_easy_cleanup(cl->h);
	curl_slist_free_all(cl->hdrs);
	free(cl->url);
	free(cl->body.p);
	free(cl->head.p);
	memset(cl, 0, sizeof(*cl));
}

static int c_gc(lua_State *L)
{
	client_free(luaL_checkudata(L, 1, CLIENT_MT));
	return 0;
}

static bool add_header(struct client *cl, const char *k, const char *v)
{
	struct curl_slist *l;
	size_t n = strlen(k) + strlen(v) + 3;
	char *line = malloc(n);

	if (!line)
		return false;
	if (v[0])
		snprintf(line, n, "%s: %s", k, v);
	else
		snprintf(line, n, "%s;", k);	/* curl's way to send it empty */
	l = curl_slist_append(cl->hdrs, line);
	free(line);
	if (!l)
		return false;
	cl->hdrs = l;
	return true;
}

/* The reply's header block as a table of lower-cased names. */
static void push_reply_headers(lua_State *L, const char *p, size_t n)
{
	const char *end = p + n, *eol, *colon, *v, *ve;
	bool first = true;

	lua_newtable(L);
	for (; p < end; p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if (first) {		/* the status line */
			first = false;
			continue;
		}
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			continue;
		v = colon + 1;
		ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' ||
				  ve[-1] == '\t'))
			ve--;
		{
			luaL_Buffer b;
			size_t i, kn = (size_t)(colon - p);
			char *q = luaL_buffinitsize(L, &b, kn);

			for (i = 0; i < kn; i++)
				q[i] = (p[i] >= 'A' && p[i] <= 'Z') ?
				       p[i] - 'A' + 'a' : p[i];
			luaL_pushresultsize(&b, kn);
		}
		lua_pushvalue(L, -1);
		if (lua_rawget(L, -3) == LUA_TSTRING) {
			lua_pushliteral(L, ", ");
			lua_pushlstring(L, v, (size_t)(ve - v));
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushlstring(L, v, (size_t)(ve - v));
		}
		lua_rawset(L, -3);
	}
}

static int curl_failure(lua_State *L, struct client *cl, CURLcode rc,
			const char *sock, const char *method,
			const char *path, lua_Integer timeout)
{
	long oserr = 0;
	int err;

	curl_easy_getinfo(cl->h, CURLINFO_OS_ERRNO, &oserr);
	zm_err_clear();
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		err = oserr ? (int)oserr : ECONNREFUSED;
		zm_err_set("connect %s", sock);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		err = ETIMEDOUT;
		zm_err_set("%s %s on %s: no reply within %lld ms", method,
			   path, sock, (long long)timeout);
		break;
	case CURLE_OUT_OF_MEMORY:
		err = ENOMEM;
		zm_err_set("%s %s on %s", method, path, sock);
		break;
	case CURLE_WRITE_ERROR:
		err = cl->body.over || cl->head.over ? EMSGSIZE : ENOMEM;
		zm_err_set("%s %s on %s: reply%s", method, path, sock,
			   err == EMSGSIZE ? " over 1 GiB" : "");
		break;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		err = oserr ? (int)oserr : EIO;
		zm_err_set("%s %s on %s: %s", method, path, sock,
			   cl->err[0] ? cl->err : curl_easy_strerror(rc));
		break;
	default:
		err = EIO;
		zm_err_set("%s %s on %s: %s", method, path, sock,
			   cl->err[0] ? cl->err : curl_easy_strerror(rc));
		break;
	}
	client_free(cl);
	return zm_push_error(L, err);
}

#define SETOPT(h, o, v) ok = ok && curl_easy_setopt(h, o, v) == CURLE_OK

/* request { socket =, method =, path =, body =, headers =, timeout_ms = }
 * -> status, body, headers */
static const char *const request_fields[] = {
	"socket", "method", "path", "body", "headers", "timeout_ms", NULL,
};

static int l_request(lua_State *L)
{
	const char *const *fields = request_fields;
	const char *sock, *method, *path, *body = NULL, *why;
	bool has_ctype = false, ok = true;
	size_t len, body_len = 0, i;
	lua_Integer timeout;
	struct client *cl;
	CURLcode rc;
	long status = 0;
	char num[32];

	zm_check_fields(L, 1, fields);
	sock = zm_opt_string(L, 1, "socket", true);
	if (!sock)		/* zm_opt_string raised; for the compiler */
		return 0;
	lua_getfield(L, 1, "socket");
	lua_tolstring(L, -1, &len);
	lua_pop(L, 1);
	if (!len || strlen(sock) != len || len >= SUN_PATH_LEN)
		zm_field_error(L, 1, "socket",
			       lua_pushfstring(L, "a path of 1..%d bytes expected",
					       (int)SUN_PATH_LEN - 1));
	method = zm_opt_string(L, 1, "method", false);
	if (!method)
		method = "GET";
	if (!is_token(method, strlen(method)) || strlen(method) > 32)
		zm_field_error(L, 1, "method",
			       lua_pushfstring(L, "'%s' is not an HTTP method",
					       method));
	path = zm_opt_string(L, 1, "path", true);
	if (!path)
		return 0;
	len = strlen(path);
	for (i = 0; i < len; i++)
		if ((unsigned char)path[i] <= 0x20 ||
		    (unsigned char)path[i] >= 0x7f || path[i] == '#')
			break;
	if (path[0] != '/' || i < len)
		zm_field_error(L, 1, "path",
			       lua_pushfstring(L, "'%s' is not a path ('/' first, then "
					       "printable ASCII without spaces or '#': "
					       "percent-encode the rest)", path));
	lua_getfield(L, 1, "body");
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			zm_field_error(L, 1, "body",
				       lua_pushfstring(L, "string expected, got %s",
						       luaL_typename(L, -1)));
		body = lua_tolstring(L, -1, &body_len);
	}
	lua_pop(L, 1);			/* the option table keeps it alive */
	timeout = zm_opt_int(L, 1, "timeout_ms", 30000, 1, 86400000);
	lua_settop(L, 1);
	lua_getfield(L, 1, "headers");	/* 2 */
	if ((why = headers_problem(L, 2, false)))
		return luaL_argerror(L, 1, why);
	if (lua_istable(L, 2)) {
		lua_pushnil(L);
		while (lua_next(L, 2)) {
			const char *k = lua_tostring(L, -2);

			has_ctype = has_ctype || !strcasecmp(k, "content-type");
			lua_pop(L, 1);
		}
	}

	cl = lua_newuserdatauv(L, sizeof(*cl), 0);	/* 3 */
	memset(cl, 0, sizeof(*cl));
	luaL_setmetatable(L, CLIENT_MT);
	zm_err_clear();
	cl->h = curl_easy_init();
	len = strlen(path) + sizeof("http://zmesh");
	cl->url = malloc(len);
	if (!cl->h || !cl->url) {
		client_free(cl);
		zm_err_set("libcurl");
		return zm_push_error(L, ENOMEM);
	}
	snprintf(cl->url, len, "http://zmesh%s", path);
	if (lua_istable(L, 2)) {
		lua_pushnil(L);
		while (ok && lua_next(L, 2)) {
			ok = add_header(cl, lua_tostring(L, -2),
					header_text(L, num, sizeof(num)));
			lua_pop(L, 1);
		}
		if (!ok)
			lua_pop(L, 1);
	}
	/* curl would label a body as a form; "Name:" drops its header. */
	if (ok && body && !has_ctype) {
		struct curl_slist *l = curl_slist_append(cl->hdrs, "Content-Type:");

		ok = l != NULL;
		if (ok)
			cl->hdrs = l;
	}
	if (!ok) {
		client_free(cl);
		zm_err_set("libcurl headers");
		return zm_push_error(L, ENOMEM);
	}

	SETOPT(cl->h, CURLOPT_ERRORBUFFER, cl->err);
	SETOPT(cl->h, CURLOPT_UNIX_SOCKET_PATH, sock);
	SETOPT(cl->h, CURLOPT_URL, cl->url);
	SETOPT(cl->h, CURLOPT_PROTOCOLS_STR, "http");
	SETOPT(cl->h, CURLOPT_PROXY, "");
	SETOPT(cl->h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(cl->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SETOPT(cl->h, CURLOPT_TIMEOUT_MS, (long)timeout);
	SETOPT(cl->h, CURLOPT_USERAGENT, "zmesh/" ZM_VERSION);
	SETOPT(cl->h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(cl->h, CURLOPT_WRITEDATA, &cl->body);
	SETOPT(cl->h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(cl->h, CURLOPT_HEADERDATA, &cl->head);
	if (cl->hdrs)
		SETOPT(cl->h, CURLOPT_HTTPHEADER, cl->hdrs);
	if (!strcmp(method, "HEAD"))
		SETOPT(cl->h, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET") || body)
		SETOPT(cl->h, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		SETOPT(cl->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		SETOPT(cl->h, CURLOPT_POSTFIELDS, body);
	}
	if (!ok) {
		client_free(cl);
		zm_err_set("libcurl options");
		return zm_push_error(L, EIO);
	}

	rc = curl_easy_perform(cl->h);
	if (rc != CURLE_OK)
		return curl_failure(L, cl, rc, sock, method, path, timeout);
	curl_easy_getinfo(cl->h, CURLINFO_RESPONSE_CODE, &status);
	lua_pushinteger(L, status);
	lua_pushlstring(L, cl->body.p ? cl->body.p : "", cl->body.len);
	push_reply_headers(L, cl->head.p ? cl->head.p : "", cl->head.len);
	client_free(cl);
	return 3;
}

/* ---- module ------------------------------------------------------- */

static const luaL_Reg server_methods[] = {
	{ "run", s_run },
	{ "fd", s_fd },
	{ "timeout", s_timeout },
	{ "close", s_close },
	{ "path", s_path },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "listen", l_listen },
	{ "request", l_request },
	{ NULL, NULL },
};

static const struct zm_contract contract[] = {
	{ "http.listen", listen_fields },
	{ "http.request", request_fields },
	{ NULL, NULL },
};

void zm_open_http(lua_State *L)
{
	zm_contract_add(L, contract);
	if (luaL_newmetatable(L, SERVER_MT)) {
		luaL_newlib(L, server_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, s_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, s_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, s_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	if (luaL_newmetatable(L, REQUEST_MT)) {
		lua_createtable(L, 0, 1);
		lua_pushcfunction(L, r_respond);
		lua_setfield(L, -2, "respond");
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	if (luaL_newmetatable(L, CLIENT_MT)) {
		lua_pushcfunction(L, c_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	if (lua_getfield(L, LUA_REGISTRYINDEX, TOKENS_KEY) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_createtable(L, 0, 1);
		lua_pushliteral(L, "k");
		lua_setfield(L, -2, "__mode");
		lua_setmetatable(L, -2);
		lua_pushvalue(L, -1);
		lua_setfield(L, LUA_REGISTRYINDEX, TOKENS_KEY);
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
}
