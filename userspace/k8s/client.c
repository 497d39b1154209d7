// SPDX-License-Identifier: Apache-2.0
/*
 * The Kubernetes API source: three informers (Services, EndpointSlices,
 * own Node), each a small state machine LIST (paginated) -> WATCH, driven
 * by one curl multi handle whose sockets and timeout live in the agent's
 * kpx_loop.
 *
 * Watch bodies are newline-delimited JSON events (what the API server's
 * encoder writes); each line is fed to json_tokener as it arrives, so
 * memory is bounded by one event, never by the stream. Framing by line lets
 * a broken line be identified exactly: the client then restarts the watch
 * from the last resourceVersion it applied, so no event is lost.
 *
 * Callbacks from curl (write/socket/timer) never remove easy handles; they
 * record why a transfer should end and return an error to curl, and the
 * completion is handled after curl_multi_socket_action() returns.
 */
#include <ctype.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "k8s/client.h"
#include "model/store.h"

/* CPU seconds of the process so far: a listing's cost on a loaded
 * machine, where its wall time says little (perf/scale_bench.sh). */
static double cpu_seconds(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#define EVENT_MAX (16u << 20)	/* one watch event */
#define LIST_PAGE_MAX (512u << 20) /* one LIST page */
#define ERRBODY_MAX 4096
/*
 * Stall bound: the API server's watch cache sends a BOOKMARK to every
 * watch that asked for them about once a minute, so a watch that has
 * shown bookmarks and then stays silent for two of those intervals is
 * dead (a half-open TCP connection, a hung proxy, a wedged server), even
 * though TCP keepalive would take ~10 minutes to say so.
 */
#define DEFAULT_STALL_MS (120 * 1000)
/* A server that never sent a bookmark (watch cache off) is silent while
 * idle; it ends the watch at timeoutSeconds, so only allow a grace past it. */
#define NO_BOOKMARK_GRACE_MS (30 * 1000)
/* client-go's reflector: timeoutSeconds randomized in [5min, 10min]. */
#define WATCH_TIMEOUT_MIN_S 300
#define WATCH_TIMEOUT_MAX_S 600
/* A watch that stayed open this long clears the failure streak, so an old
 * outage does not slow the recovery from the next error (client-go resets
 * its backoff after 2 minutes without a failure). */
#define DEFAULT_BACKOFF_RESET_MS (60 * 1000)
#define DEFAULT_BACKOFF_MIN_MS 500
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_PAGE_LIMIT 500
#define CONNECT_TIMEOUT_MS 10000
#define INITIAL_EVENTS_END "k8s.io/initial-events-end"
/* An exec plugin runs on the agent's loop (as client-go runs it in the
 * request path): bounded so a hung plugin cannot hold the agent. */
#define EXEC_TIMEOUT_MS 30000

enum inf_state {
	ST_IDLE,
	ST_BACKOFF,
	ST_LISTING,
	ST_STREAMING, /* watch-list: initial events not finished yet */
	ST_WATCHING,
};

enum req_kind {
	REQ_LIST,
	REQ_WATCH,
	/* Streaming list (client-go's WatchListClient): a watch with
	 * sendInitialEvents=true whose events up to the bookmark annotated
	 * k8s.io/initial-events-end are the full state; then a plain watch
	 * on the same connection. */
	REQ_WATCHLIST,
};

/* Why a transfer was ended from inside a curl callback or by us. */
enum abort_reason {
	AB_NONE,
	AB_RELIST,  /* watch ERROR 410 */
	AB_GARBAGE, /* unparsable body */
	AB_ERROR,   /* watch ERROR event (not 410) */
	AB_TOOBIG,  /* LIST page over the limit */
	AB_FALLBACK, /* streaming list not honoured: use a paginated LIST */
};

struct informer {
	struct kpx_k8s_source *src;
	enum kpx_kind kind;
	const char *name; /* "services", for logs and status */
	const char *path;
	char query[1024]; /* selector, already URL-encoded, or "" */

	enum inf_state state;
	enum req_kind next; /* what the retry timer starts */
	char rv[128];	    /* last applied resourceVersion */
	char *cont;	    /* LIST continue token */

	/* The transfer in flight. */
	CURL *easy;
	enum req_kind req;
	struct curl_slist *hdrs;
	char errbuf[CURL_ERROR_SIZE];
	long http_code;
	json_tokener *tok;
	struct json_object *list_obj;
	size_t body_bytes, line_bytes;
	bool skip_line, pending;
	char errbody[ERRBODY_MAX];
	size_t errbody_len;
	enum abort_reason abort;
	char abort_msg[256];
	uint64_t req_start_ms, last_byte_ms;
	uint64_t req_events;
	unsigned req_timeout_s; /* timeoutSeconds of the watch in flight */
	bool initial_done;	/* REQ_WATCHLIST: initial-events-end seen */
	bool counted;		/* response counted in the rest metrics */
	unsigned cred_gen;	/* exec credential the request carried */
	bool retried_401;	/* re-ran the exec plugin for a 401 already */

	/* Sticky per informer: the server sends bookmarks (so silence means
	 * a stall); the server refused the streaming list (LIST instead). */
	bool bookmarks_seen, watchlist_off;

	struct kpx_timer *retry_timer, *stall_timer;
	unsigned failures;

	uint64_t events, relists, errors, lists, watches, watch_lists;
	char last_error[640];
};

/* client-go's rest_client_request_duration_seconds buckets. */
static const double rest_bounds[KPX_K8S_REST_BUCKETS] = {
	0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60,
};

struct kpx_k8s_source {
	struct kpx_loop *loop;
	struct kpx_store *store;
	kpx_change_fn on_change;
	void *arg;
	struct kpx_k8s_options opts;
	char server[512]; /* without trailing '/' */

	CURLM *multi;
	struct kpx_timer *curl_timer;
	struct informer inf[KPX_KIND_COUNT];
	int n_inf;
	bool changed; /* store written since the last on_change */
	unsigned seed;

	struct stat token_st; /* of token_file when last read */
	bool token_st_valid;

	struct kpx_k8s_rest_stats rest; /* buckets not cumulative here */

	/* exec plugin credential, cached until its expiry or a 401 */
	struct kpx_k8s_exec_cred cred;
	bool cred_valid;
	unsigned cred_gen;
	uint64_t exec_runs;

	char proxy[1024]; /* "" direct; set on every handle */
	/* tls-server-name: the URL names it, the connection goes to the
	 * server's real address (see kpx_k8s_open) */
	struct curl_slist *connect_to;
};

static bool curl_inited;

static void start_request(struct informer *inf, enum req_kind req);
static void process_done(struct kpx_k8s_source *src);

/* ---- helpers ---------------------------------------------------------- */

static void set_error(struct informer *inf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_error(struct informer *inf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(inf->last_error, sizeof(inf->last_error), fmt, ap);
	va_end(ap);
	inf->errors++;
	kpx_warn("k8s %s: %s", inf->name, inf->last_error);
}

static const char *str_at(struct json_object *o, const char *k1,
			  const char *k2)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k1, &v))
		return NULL;
	if (k2 && !json_object_object_get_ex(v, k2, &v))
		return NULL;
	return json_object_is_type(v, json_type_string) ?
		       json_object_get_string(v) :
		       NULL;
}

static void set_rv(struct informer *inf, const char *rv)
{
	if (rv && *rv && strlen(rv) < sizeof(inf->rv))
		strcpy(inf->rv, rv);
}

/* Re-reads the token file when it changed on disk (token rotation). */
static void refresh_token(struct kpx_k8s_source *src)
{
	struct kpx_k8s_conn *c = &src->opts.conn;
	struct stat st;
	char buf[sizeof(c->token)];
	size_t n;
	FILE *f;

	if (!c->token_file[0] || stat(c->token_file, &st))
		return;
	if (src->token_st_valid && st.st_mtim.tv_sec == src->token_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == src->token_st.st_mtim.tv_nsec &&
	    st.st_ino == src->token_st.st_ino && st.st_size == src->token_st.st_size)
		return;
	f = fopen(c->token_file, "r");
	if (!f) {
		kpx_warn("k8s: token file %s: %s", c->token_file,
			 strerror(errno));
		return;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	if (!n) {
		/* Mid-rotation writers may leave it empty briefly. */
		kpx_warn("k8s: token file %s is empty, keeping the old token",
			 c->token_file);
		return;
	}
	if (src->token_st_valid && strcmp(buf, c->token))
		kpx_info("k8s: token file %s changed, using the new token",
			 c->token_file);
	memcpy(c->token, buf, n + 1);
	explicit_bzero(buf, sizeof(buf));
	src->token_st = st;
	src->token_st_valid = true;
}

/* The exec plugin's credential: cached until expirationTimestamp (or a
 * 401), then the plugin runs again. Never a request without it. */
static int refresh_exec(struct kpx_k8s_source *src, struct informer *inf)
{
	struct kpx_k8s_exec_cred c;
	char err[768] = "";
	int ret;

	if (!src->opts.conn.exec)
		return 0;
	if (src->cred_valid &&
	    (!src->cred.expiry || (int64_t)time(NULL) < src->cred.expiry))
		return 0;
	if (src->cred_valid)
		kpx_info("k8s: exec credential expired, running the plugin again");
	ret = kpx_k8s_exec_run(src->opts.conn.exec, EXEC_TIMEOUT_MS, &c, err,
			       sizeof(err));
	src->exec_runs++;
	if (ret) {
		set_error(inf, "%s", err);
		return ret;
	}
	kpx_k8s_exec_cred_clear(&src->cred);
	src->cred = c; /* takes the PEM buffers */
	src->cred_valid = true;
	src->cred_gen++;
	kpx_info("k8s: exec plugin returned a %s%s",
		 c.cert_pem ? "client certificate" : "token",
		 c.expiry ? " with an expiry" : "");
	return 0;
}

static uint64_t backoff_ms(struct kpx_k8s_source *src, unsigned failures)
{
	uint64_t min = src->opts.backoff_min_ms, max = src->opts.backoff_max_ms;
	uint64_t d = min;

	for (unsigned i = 1; i < failures && d < max; i++)
		d *= 2;
	/* Up to +50% jitter so that many nodes do not retry in lockstep. */
	d += rand_r(&src->seed) % (d / 2 + 1);
	return d > max ? max : d;
}

static const char *req_name(enum req_kind r)
{
	return r == REQ_LIST ? "list" : r == REQ_WATCH ? "watch" : "watch-list";
}

/* Counts one request in the rest_client_* metrics, once: when its response
 * headers arrive (a watch counts then, not when it ends), or at completion
 * without a response (code 0, "<error>"). */
static void rest_count(struct informer *inf, int code)
{
	struct kpx_k8s_rest_stats *r = &inf->src->rest;
	double secs = (double)(kpx_now_ms() - inf->req_start_ms) / 1000.0;
	size_t i;

	if (inf->counted)
		return;
	inf->counted = true;
	for (i = 0; i < r->n_codes && r->codes[i].code != code; i++)
		;
	if (i == r->n_codes && r->n_codes < KPX_K8S_REST_CODES) {
		r->codes[i].code = code;
		r->codes[i].count = 0;
		r->n_codes++;
	}
	if (i < r->n_codes)
		r->codes[i].count++;
	for (i = 0; i < KPX_K8S_REST_BUCKETS; i++) {
		if (secs <= r->bounds[i]) {
			r->buckets[i]++;
			break;
		}
	}
	r->count++;
	r->sum += secs;
}

/* How long this transfer may stay silent before it counts as stalled. */
static uint64_t stall_bound_ms(const struct informer *inf)
{
	const struct kpx_k8s_source *src = inf->src;

	if (inf->req == REQ_WATCH && !inf->bookmarks_seen)
		return (uint64_t)inf->req_timeout_s * 1000 + NO_BOOKMARK_GRACE_MS;
	return src->opts.stall_ms;
}

/* A watch that answered 200 and stayed open long enough was healthy:
 * whatever ends it starts a fresh failure streak. */
static void note_healthy(struct informer *inf)
{
	if (inf->req != REQ_LIST && inf->http_code == 200 &&
	    kpx_now_ms() - inf->req_start_ms >= inf->src->opts.backoff_reset_ms &&
	    inf->failures) {
		kpx_dbg(1, "k8s %s: watch was healthy for %llu ms, backoff reset",
			inf->name,
			(unsigned long long)(kpx_now_ms() - inf->req_start_ms));
		inf->failures = 0;
	}
}

static const char *state_name(enum inf_state s)
{
	switch (s) {
	case ST_IDLE:
		return "idle";
	case ST_BACKOFF:
		return "backoff";
	case ST_LISTING:
		return "listing";
	case ST_STREAMING:
		return "streaming";
	case ST_WATCHING:
		return "watching";
	}
	return "?";
}

/* ---- request lifecycle ------------------------------------------------ */

static void end_request(struct informer *inf)
{
	struct kpx_k8s_source *src = inf->src;

	if (inf->easy) {
		curl_multi_remove_handle(src->multi, inf->easy);
		curl_easy_cleanup(inf->easy);
		inf->easy = NULL;
	}
	curl_slist_free_all(inf->hdrs);
	inf->hdrs = NULL;
	if (inf->tok) {
		json_tokener_free(inf->tok);
		inf->tok = NULL;
	}
	if (inf->list_obj) {
		json_object_put(inf->list_obj);
		inf->list_obj = NULL;
	}
	if (inf->stall_timer)
		kpx_timer_arm(inf->stall_timer, 0);
}

static void schedule(struct informer *inf, enum req_kind next, bool fail)
{
	uint64_t ms;

	inf->next = next;
	if (!fail) {
		start_request(inf, next);
		return;
	}
	inf->failures++;
	ms = backoff_ms(inf->src, inf->failures);
	kpx_dbg(1, "k8s %s: retrying %s in %llu ms", inf->name,
		next == REQ_LIST ? "list" : "watch", (unsigned long long)ms);
	inf->state = ST_BACKOFF;
	kpx_timer_arm(inf->retry_timer, ms);
}

static void retry_fired(void *arg)
{
	struct informer *inf = arg;

	start_request(inf, inf->next);
	process_done(inf->src);
}

static void handle_error_body(struct informer *inf, const char *what)
{
	struct json_object *st = NULL;
	const char *msg = NULL;

	if (inf->errbody_len) {
		inf->errbody[inf->errbody_len] = '\0';
		st = json_tokener_parse(inf->errbody);
		if (st)
			msg = str_at(st, "message", NULL);
	}
	set_error(inf, "%s: HTTP %ld%s%s", what, inf->http_code,
		  msg ? ": " : "", msg ? msg : "");
	json_object_put(st);
}

/* ---- decoding events into the store ----------------------------------- */

static int decode_into_store(struct informer *inf, struct json_object *obj)
{
	struct kpx_k8s_source *src = inf->src;
	char err[256] = "", ref[KPX_NS_MAX + KPX_NAME_MAX + 2];
	void *out = NULL;
	int ret;

	switch (inf->kind) {
	case KPX_KIND_SERVICE:
		ret = kpx_service_decode(obj, (struct kpx_service **)&out, err,
					 sizeof(err));
		break;
	case KPX_KIND_SLICE:
		ret = kpx_slice_decode(obj, (struct kpx_endpoint_slice **)&out,
				       err, sizeof(err));
		break;
	case KPX_KIND_NODE:
		ret = kpx_node_decode(obj, (struct kpx_node **)&out, err,
				      sizeof(err));
		break;
	default:
		return -EINVAL;
	}
	if (ret) {
		const char *ns = str_at(obj, "metadata", "namespace");
		const char *name = str_at(obj, "metadata", "name");

		snprintf(ref, sizeof(ref), "%s%s%s", ns ? ns : "",
			 ns ? "/" : "", name ? name : "?");
		snprintf(inf->last_error, sizeof(inf->last_error),
			 "%s: %s, skipped", ref, err[0] ? err : strerror(-ret));
		inf->errors++;
		kpx_err("k8s %s: %s", inf->name, inf->last_error);
		/* A relist would not carry an invalid object either: drop
		 * an older valid version so watch and list agree. */
		if (name && (inf->kind != KPX_KIND_NODE ||
			     kpx_store_node(src->store))) {
			kpx_store_delete(src->store, inf->kind, ns ? ns : "",
					 name);
			src->changed = true;
		}
		return ret;
	}
	kpx_store_upsert(src->store, inf->kind, out);
	src->changed = true;
	return 0;
}

/* The streaming list reached its end marker: the store holds the full
 * state at rv; the same connection goes on as a plain watch. */
static void initial_events_done(struct informer *inf, const char *rv)
{
	struct kpx_k8s_source *src = inf->src;

	set_rv(inf, rv);
	inf->initial_done = true;
	inf->req = REQ_WATCH;
	inf->state = ST_WATCHING;
	inf->failures = 0;
	kpx_store_replace_end(src->store, inf->kind);
	src->changed = true;
	kpx_info("k8s %s: listed (streaming, %llu objects), resourceVersion %s, process cpu %.2f s",
		 inf->name, (unsigned long long)inf->req_events, inf->rv,
		 cpu_seconds());
}

/* One watch event. <0: the transfer must end (reason in inf->abort). */
static int handle_event(struct informer *inf, struct json_object *ev)
{
	struct json_object *obj;
	const char *type, *rv;

	type = str_at(ev, "type", NULL);
	if (!type || !json_object_object_get_ex(ev, "object", &obj) ||
	    !json_object_is_type(obj, json_type_object)) {
		inf->abort = AB_GARBAGE;
		snprintf(inf->abort_msg, sizeof(inf->abort_msg),
			 "watch event without type/object");
		return -1;
	}
	inf->events++;
	inf->req_events++;
	rv = str_at(obj, "metadata", "resourceVersion");
	if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
		/* A bad object is skipped; the watch moves past it. */
		decode_into_store(inf, obj);
		set_rv(inf, rv);
	} else if (!strcmp(type, "DELETED")) {
		const char *ns = str_at(obj, "metadata", "namespace");
		const char *name = str_at(obj, "metadata", "name");

		if (name) {
			kpx_store_delete(inf->src->store, inf->kind,
					 ns ? ns : "", name);
			inf->src->changed = true;
		}
		set_rv(inf, rv);
	} else if (!strcmp(type, "BOOKMARK")) {
		inf->bookmarks_seen = true;
		if (inf->req == REQ_WATCHLIST && !inf->initial_done) {
			const char *end = NULL;
			struct json_object *md, *ann, *v;

			if (json_object_object_get_ex(obj, "metadata", &md) &&
			    json_object_object_get_ex(md, "annotations", &ann) &&
			    json_object_object_get_ex(ann, INITIAL_EVENTS_END, &v))
				end = json_object_get_string(v);
			if (!end || strcmp(end, "true")) {
				/* A server that ignores sendInitialEvents
				 * sends plain bookmarks: what came before was
				 * not a complete list. */
				inf->abort = AB_FALLBACK;
				snprintf(inf->abort_msg, sizeof(inf->abort_msg),
					 "bookmark without %s: the server ignored sendInitialEvents",
					 INITIAL_EVENTS_END);
				return -1;
			}
			initial_events_done(inf, rv);
			return 0;
		}
		set_rv(inf, rv);
	} else if (!strcmp(type, "ERROR")) {
		struct json_object *code;
		const char *msg = str_at(obj, "message", NULL);

		if (json_object_object_get_ex(obj, "code", &code) &&
		    json_object_get_int(code) == 410) {
			inf->abort = AB_RELIST;
			snprintf(inf->abort_msg, sizeof(inf->abort_msg),
				 "watch: 410 Gone (%s)", msg ? msg : "expired");
			return -1;
		}
		inf->abort = AB_ERROR;
		snprintf(inf->abort_msg, sizeof(inf->abort_msg),
			 "watch ERROR event: %s", msg ? msg : "(no message)");
		return -1;
	} else {
		kpx_warn("k8s %s: unknown watch event type \"%s\", ignored",
			 inf->name, type);
	}
	return 0;
}

/* Feeds one segment of a line (no '\n') to the tokener. */
static int feed_segment(struct informer *inf, const char *p, size_t len)
{
	while (len) {
		struct json_object *obj;
		enum json_tokener_error jerr;

		if (!inf->pending) {
			while (len && isspace((unsigned char)*p))
				p++, len--;
			if (!len)
				break;
		}
		obj = json_tokener_parse_ex(inf->tok, p, (int)len);
		jerr = json_tokener_get_error(inf->tok);
		if (obj) {
			size_t used = json_tokener_get_parse_end(inf->tok);
			int ret = json_object_is_type(obj, json_type_object) ?
					  handle_event(inf, obj) :
					  -1;

			if (ret < 0 && inf->abort == AB_NONE) {
				inf->abort = AB_GARBAGE;
				snprintf(inf->abort_msg, sizeof(inf->abort_msg),
					 "watch event is not a JSON object");
			}
			json_object_put(obj);
			json_tokener_reset(inf->tok);
			inf->pending = false;
			if (ret < 0)
				return -1;
			if (used > len)
				used = len;
			p += used;
			len -= used;
			continue;
		}
		if (jerr == json_tokener_continue) {
			inf->pending = true;
			break;
		}
		inf->abort = AB_GARBAGE;
		snprintf(inf->abort_msg, sizeof(inf->abort_msg),
			 "invalid JSON in watch stream: %s",
			 json_tokener_error_desc(jerr));
		return -1;
	}
	return 0;
}

static int feed_watch(struct informer *inf, const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;

		if (!inf->skip_line) {
			inf->line_bytes += seg;
			if (inf->line_bytes > EVENT_MAX) {
				/* Re-watching would get it again: skip it. */
				set_error(inf,
					  "watch event larger than %u bytes, skipped",
					  EVENT_MAX);
				json_tokener_reset(inf->tok);
				inf->pending = false;
				inf->skip_line = true;
			} else if (feed_segment(inf, p, seg) < 0) {
				return -1;
			}
		}
		if (!nl) {
			break;
		}
		if (!inf->skip_line && inf->pending) {
			inf->abort = AB_GARBAGE;
			snprintf(inf->abort_msg, sizeof(inf->abort_msg),
				 "truncated or invalid JSON line in watch stream");
			return -1;
		}
		inf->skip_line = false;
		inf->pending = false;
		inf->line_bytes = 0;
		json_tokener_reset(inf->tok);
		p = nl + 1;
		n -= seg + 1;
	}
	return 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct informer *inf = arg;
	size_t n = size * nmemb;
	long code = 0;

	/* The blank line ends a header block; 1xx blocks are interim (a
	 * proxy's CONNECT answer is suppressed by curl). */
	if ((n == 2 && data[0] == '\r' && data[1] == '\n') ||
	    (n == 1 && data[0] == '\n')) {
		curl_easy_getinfo(inf->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200)
			rest_count(inf, (int)code);
		if (code == 200)
			inf->retried_401 = false;
	}
	return n;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct informer *inf = arg;
	size_t n = size * nmemb;

	inf->last_byte_ms = kpx_now_ms();
	if (!inf->http_code)
		curl_easy_getinfo(inf->easy, CURLINFO_RESPONSE_CODE,
				  &inf->http_code);
	if (inf->http_code != 200) {
		size_t room = ERRBODY_MAX - 1 - inf->errbody_len;

		if (n < room)
			room = n;
		memcpy(inf->errbody + inf->errbody_len, data, room);
		inf->errbody_len += room;
		return n;
	}
	inf->body_bytes += n;
	if (inf->req != REQ_LIST)
		return feed_watch(inf, data, n) < 0 ? 0 : n;

	/* LIST: one JSON document per page, parsed as it arrives. */
	if (inf->body_bytes > LIST_PAGE_MAX) {
		inf->abort = AB_TOOBIG;
		snprintf(inf->abort_msg, sizeof(inf->abort_msg),
			 "list page larger than %u bytes", LIST_PAGE_MAX);
		return 0;
	}
	if (inf->list_obj)
		return n; /* trailing whitespace */
	inf->list_obj = json_tokener_parse_ex(inf->tok, data, (int)n);
	if (!inf->list_obj &&
	    json_tokener_get_error(inf->tok) != json_tokener_continue) {
		inf->abort = AB_GARBAGE;
		snprintf(inf->abort_msg, sizeof(inf->abort_msg),
			 "invalid JSON in list response: %s",
			 json_tokener_error_desc(
				 json_tokener_get_error(inf->tok)));
		return 0;
	}
	return n;
}

/* The server cannot stream lists: paginated LIST from now on. */
static void watchlist_fallback(struct informer *inf, const char *why)
{
	kpx_warn("k8s %s: streaming list not available (%s), falling back to a paginated LIST",
		 inf->name, why);
	inf->watchlist_off = true;
	schedule(inf, REQ_LIST, false);
}

static void stall_fired(void *arg)
{
	struct informer *inf = arg;
	uint64_t now = kpx_now_ms(), stall = stall_bound_ms(inf);
	enum req_kind req = inf->req;

	if (!inf->easy)
		return;
	if (now - inf->last_byte_ms < stall) {
		kpx_timer_arm(inf->stall_timer,
			      stall - (now - inf->last_byte_ms));
		return;
	}
	rest_count(inf, 0);
	note_healthy(inf);
	set_error(inf, "%s stalled: no data for %llu ms, restarting",
		  req_name(req), (unsigned long long)(now - inf->last_byte_ms));
	end_request(inf);
	if (req == REQ_WATCHLIST) {
		/* Silence before the end marker: a server that does not
		 * stream lists and sends no bookmarks either. */
		watchlist_fallback(inf, "no initial-events-end bookmark");
	} else {
		/* A stalled watch resumes at once; a stalled list backs off. */
		schedule(inf, req, req == REQ_LIST);
	}
	process_done(inf->src);
}

static int append_query(char *url, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int append_query(char *url, size_t len, const char *fmt, ...)
{
	size_t used = strlen(url);
	va_list ap;
	int n;

	if (used + 1 >= len)
		return -ENAMETOOLONG;
	url[used] = strchr(url, '?') ? '&' : '?';
	url[used + 1] = '\0';
	va_start(ap, fmt);
	n = vsnprintf(url + used + 1, len - used - 1, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len - used - 1 ? -ENAMETOOLONG : 0;
}

static int build_url(struct informer *inf, enum req_kind req, char *url,
		     size_t len)
{
	struct kpx_k8s_source *src = inf->src;
	int ret = 0;

	snprintf(url, len, "%s%s", src->server, inf->path);
	if (inf->query[0])
		ret = append_query(url, len, "%s", inf->query);
	if (req == REQ_LIST) {
		if (!ret)
			ret = append_query(url, len, "limit=%u",
					   src->opts.page_limit);
		if (!ret && inf->cont) {
			char *e = curl_easy_escape(NULL, inf->cont, 0);

			ret = e ? append_query(url, len, "continue=%s", e) :
				  -ENOMEM;
			curl_free(e);
		}
		return ret;
	}
	/* The server ends a watch after timeoutSeconds, spread as
	 * client-go spreads it so that watches do not end together. */
	inf->req_timeout_s = src->opts.watch_timeout_s ?
				     src->opts.watch_timeout_s :
				     WATCH_TIMEOUT_MIN_S +
					     (unsigned)rand_r(&src->seed) %
						     (WATCH_TIMEOUT_MAX_S -
						      WATCH_TIMEOUT_MIN_S + 1);
	if (req == REQ_WATCHLIST) {
		/* resourceVersion unset: the initial events are a consistent
		 * read of the current state, as client-go asks for them. */
		if (!ret)
			ret = append_query(url, len,
					   "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=%u",
					   inf->req_timeout_s);
		return ret;
	}
	{
		char *e = curl_easy_escape(NULL, inf->rv, 0);

		if (!ret)
			ret = e ? append_query(url, len,
					       "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
					       e, inf->req_timeout_s) :
				  -ENOMEM;
		curl_free(e);
	}
	return ret;
}

/* A PEM client certificate or key: inline data (kubeconfig *-data, as a
 * blob curl copies) or a file. */
static int set_pem(CURL *e, CURLoption blob_opt, CURLoption type_opt,
		   CURLoption file_opt, const char *data, const char *file)
{
	int ret = 0;

	if (data) {
		struct curl_blob b = { .data = (void *)data,
				       .len = strlen(data),
				       .flags = CURL_BLOB_COPY };

		ret |= curl_easy_setopt(e, blob_opt, &b);
		ret |= curl_easy_setopt(e, type_opt, "PEM");
	} else if (file[0]) {
		ret |= curl_easy_setopt(e, file_opt, file);
	}
	return ret;
}

static int setup_tls(struct kpx_k8s_source *src, CURL *e)
{
	const struct kpx_k8s_conn *c = &src->opts.conn;
	int ret = 0;

	if (c->ca_data) {
		struct curl_blob b = { .data = c->ca_data,
				       .len = strlen(c->ca_data),
				       .flags = CURL_BLOB_COPY };

		ret |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
	} else if (c->ca_file[0]) {
		ret |= curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	}
	if (src->cred_valid && src->cred.cert_pem) {
		ret |= set_pem(e, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERTTYPE,
			       CURLOPT_SSLCERT, src->cred.cert_pem, "");
		ret |= set_pem(e, CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEYTYPE,
			       CURLOPT_SSLKEY, src->cred.key_pem, "");
	} else {
		ret |= set_pem(e, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERTTYPE,
			       CURLOPT_SSLCERT, c->cert_data, c->cert_file);
		ret |= set_pem(e, CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEYTYPE,
			       CURLOPT_SSLKEY, c->key_data, c->key_file);
	}
	if (c->insecure) {
		ret |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		ret |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return ret ? -EINVAL : 0;
}

static void start_request(struct informer *inf, enum req_kind req)
{
	struct kpx_k8s_source *src = inf->src;
	char url[8192], auth[sizeof(src->opts.conn.token) + 32];
	CURL *e;
	int ret;

	end_request(inf);
	kpx_timer_arm(inf->retry_timer, 0);
	/* A full state is fetched by streaming list unless this server
	 * refused it; a LIST continuation stays a LIST. */
	if (req == REQ_LIST && !inf->cont && !inf->watchlist_off &&
	    !src->opts.no_watch_list)
		req = REQ_WATCHLIST;
	inf->req = req;
	inf->next = req;
	inf->http_code = 0;
	inf->body_bytes = inf->line_bytes = 0;
	inf->skip_line = inf->pending = false;
	inf->errbody_len = 0;
	inf->errbuf[0] = '\0';
	inf->abort = AB_NONE;
	inf->abort_msg[0] = '\0';
	inf->req_events = 0;
	inf->initial_done = false;
	inf->counted = false;
	inf->req_start_ms = inf->last_byte_ms = kpx_now_ms();

	if (build_url(inf, req, url, sizeof(url))) {
		set_error(inf, "request URL too long");
		goto fail;
	}
	inf->tok = json_tokener_new();
	e = curl_easy_init();
	if (!inf->tok || !e) {
		if (e)
			curl_easy_cleanup(e);
		set_error(inf, "out of memory starting a request");
		goto fail;
	}
	inf->easy = e;
	refresh_token(src);
	if (refresh_exec(src, inf))
		goto fail;
	inf->cred_gen = src->cred_gen;
	inf->hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (src->opts.conn.exec ? src->cred.token[0] : src->opts.conn.token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
			 src->opts.conn.exec ? src->cred.token :
					       src->opts.conn.token);
		inf->hdrs = curl_slist_append(inf->hdrs, auth);
		explicit_bzero(auth, sizeof(auth));
	}
	ret = curl_easy_setopt(e, CURLOPT_URL, url);
	ret |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, inf->hdrs);
	ret |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	ret |= curl_easy_setopt(e, CURLOPT_WRITEDATA, inf);
	ret |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	ret |= curl_easy_setopt(e, CURLOPT_HEADERDATA, inf);
	ret |= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	ret |= curl_easy_setopt(e, CURLOPT_PRIVATE, inf);
	ret |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, inf->errbuf);
	ret |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	ret |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
				(long)CONNECT_TIMEOUT_MS);
	ret |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	ret |= curl_easy_setopt(e, CURLOPT_USERAGENT, "kpx/" KPX_VERSION);
	/* The proxy was chosen at open as client-go chooses it (proxy-url,
	 * else the environment by Go's rules): "" means direct, and an empty
	 * NOPROXY keeps curl from applying its own reading of no_proxy. */
	ret |= curl_easy_setopt(e, CURLOPT_PROXY, src->proxy);
	ret |= curl_easy_setopt(e, CURLOPT_NOPROXY, "");
	if (src->connect_to)
		ret |= curl_easy_setopt(e, CURLOPT_CONNECT_TO, src->connect_to);
	if (src->opts.conn.username[0] || src->opts.conn.password[0]) {
		ret |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		ret |= curl_easy_setopt(e, CURLOPT_USERNAME, src->opts.conn.username);
		ret |= curl_easy_setopt(e, CURLOPT_PASSWORD, src->opts.conn.password);
	}
	if (ret || setup_tls(src, e)) {
		set_error(inf, "cannot configure the HTTP request");
		goto fail;
	}
	if (curl_multi_add_handle(src->multi, e) != CURLM_OK) {
		set_error(inf, "cannot start the HTTP request");
		goto fail;
	}
	inf->state = req == REQ_LIST	   ? ST_LISTING :
		     req == REQ_WATCHLIST ? ST_STREAMING :
					    ST_WATCHING;
	if (req == REQ_LIST)
		inf->lists++;
	else if (req == REQ_WATCHLIST)
		inf->watch_lists++;
	else
		inf->watches++;
	if (req == REQ_WATCHLIST)
		kpx_store_replace_begin(src->store, inf->kind);
	kpx_dbg(2, "k8s %s: %s %s", inf->name, req_name(req), url);
	kpx_timer_arm(inf->stall_timer, stall_bound_ms(inf));
	return;
fail:
	end_request(inf);
	schedule(inf, req, true);
}

/* ---- completion ------------------------------------------------------- */

static void list_page_done(struct informer *inf)
{
	struct kpx_k8s_source *src = inf->src;
	struct json_object *items = NULL, *list = inf->list_obj;
	const char *cont, *rv;
	bool first = !inf->cont;

	if (!list || !json_object_is_type(list, json_type_object) ||
	    !json_object_object_get_ex(list, "items", &items) ||
	    !(json_object_is_type(items, json_type_array) ||
	      json_object_is_type(items, json_type_null))) {
		set_error(inf, "list: response is not a list");
		end_request(inf);
		free(inf->cont);
		inf->cont = NULL;
		schedule(inf, REQ_LIST, true);
		return;
	}
	if (first)
		kpx_store_replace_begin(src->store, inf->kind);
	for (size_t i = 0; items && i < json_object_array_length(items); i++) {
		struct json_object *it = json_object_array_get_idx(items, i);

		if (json_object_is_type(it, json_type_object))
			decode_into_store(inf, it);
	}
	src->changed = true;
	cont = str_at(list, "metadata", "continue");
	rv = str_at(list, "metadata", "resourceVersion");
	free(inf->cont);
	inf->cont = NULL;
	if (cont && *cont) {
		inf->cont = strdup(cont);
		end_request(inf);
		if (!inf->cont) {
			set_error(inf, "out of memory");
			schedule(inf, REQ_LIST, true);
			return;
		}
		schedule(inf, REQ_LIST, false);
		return;
	}
	if (!rv || !*rv || strlen(rv) >= sizeof(inf->rv)) {
		set_error(inf, "list: no usable metadata.resourceVersion");
		end_request(inf);
		schedule(inf, REQ_LIST, true);
		return;
	}
	set_rv(inf, rv);
	end_request(inf);
	kpx_store_replace_end(src->store, inf->kind);
	kpx_info("k8s %s: listed, resourceVersion %s, process cpu %.2f s",
		 inf->name, inf->rv, cpu_seconds());
	inf->failures = 0;
	schedule(inf, REQ_WATCH, false);
}

static bool src_has_exec(const struct informer *inf)
{
	return inf->src->opts.conn.exec != NULL;
}

/* A streaming list that ended before its end marker. true: handled. */
static bool watchlist_done_early(struct informer *inf, CURLcode cc)
{
	long code = inf->http_code;

	if (inf->abort == AB_FALLBACK) {
		end_request(inf);
		watchlist_fallback(inf, inf->abort_msg);
		return true;
	}
	if (inf->abort != AB_NONE || code == 410 || (cc != CURLE_OK && !code))
		return false; /* as for a LIST: relist or retry */
	if (code == 400 || code == 422 || code == 415 || code == 501) {
		/* What a server without the WatchList feature answers. */
		char why[sizeof(inf->last_error)];

		handle_error_body(inf, "watch-list");
		snprintf(why, sizeof(why), "%s", inf->last_error);
		end_request(inf);
		watchlist_fallback(inf, why);
		return true;
	}
	if (code == 200 && cc == CURLE_OK) {
		end_request(inf);
		watchlist_fallback(inf, "stream ended before the initial-events-end bookmark");
		return true;
	}
	return false;
}

static void transfer_done(struct informer *inf, CURLcode cc)
{
	enum req_kind req = inf->req;
	uint64_t lasted = kpx_now_ms() - inf->req_start_ms;
	const char *what = req_name(req);

	rest_count(inf, 0);
	note_healthy(inf);
	if (req == REQ_WATCHLIST) {
		if (watchlist_done_early(inf, cc))
			return;
		/* Otherwise retried like the LIST it stands for. */
		req = inf->req = REQ_LIST;
	}

	if (inf->abort == AB_RELIST) {
		kpx_info("k8s %s: %s, relisting", inf->name, inf->abort_msg);
		inf->relists++;
		end_request(inf);
		schedule(inf, REQ_LIST, false);
		return;
	}
	if (inf->abort != AB_NONE) {
		set_error(inf, "%s", inf->abort_msg);
		end_request(inf);
		if (req == REQ_LIST) {
			free(inf->cont);
			inf->cont = NULL;
		}
		/* Resuming re-delivers whatever followed the last good event. */
		schedule(inf, req, true);
		return;
	}
	if (cc != CURLE_OK && !inf->http_code) {
		set_error(inf, "%s: %s", what,
			  inf->errbuf[0] ? inf->errbuf : curl_easy_strerror(cc));
		end_request(inf);
		schedule(inf, req, true);
		return;
	}
	if (inf->http_code == 410) {
		/* Expired continue token or too old resourceVersion. */
		kpx_info("k8s %s: %s: 410 Gone, relisting", inf->name,
			 req == REQ_LIST ? "list continue" : "watch");
		inf->relists++;
		end_request(inf);
		free(inf->cont);
		inf->cont = NULL;
		schedule(inf, REQ_LIST, false);
		return;
	}
	if (inf->http_code == 401 && src_has_exec(inf) &&
	    inf->cred_gen == inf->src->cred_gen && inf->src->cred_valid) {
		/* The plugin's credential was refused: the next request runs
		 * the plugin again (client-go's refresh on 401). */
		kpx_info("k8s %s: 401 with the exec plugin's credential, it runs again",
			 inf->name);
		inf->src->cred_valid = false;
	}
	if (inf->http_code == 401 && src_has_exec(inf) && !inf->retried_401) {
		/* Once at once; a credential refused again backs off. */
		inf->retried_401 = true;
		handle_error_body(inf, what);
		end_request(inf);
		if (req == REQ_LIST) {
			free(inf->cont);
			inf->cont = NULL;
		}
		schedule(inf, req, false);
		return;
	}
	if (inf->http_code != 200) {
		handle_error_body(inf, what);
		end_request(inf);
		if (req == REQ_LIST) {
			free(inf->cont);
			inf->cont = NULL;
		}
		schedule(inf, req, true);
		return;
	}
	if (cc != CURLE_OK) {
		set_error(inf, "%s: %s", what,
			  inf->errbuf[0] ? inf->errbuf : curl_easy_strerror(cc));
		end_request(inf);
		if (req == REQ_LIST) {
			free(inf->cont);
			inf->cont = NULL;
		}
		schedule(inf, req, true);
		return;
	}
	if (req == REQ_LIST) {
		list_page_done(inf);
		return;
	}
	/* Clean end of a watch: resume from the last resourceVersion. A
	 * server that ends watches at once without events is backed off. */
	end_request(inf);
	if (inf->req_events || lasted >= 1000) {
		inf->failures = 0;
		schedule(inf, REQ_WATCH, false);
	} else {
		kpx_dbg(1, "k8s %s: watch ended after %llu ms without events",
			inf->name, (unsigned long long)lasted);
		schedule(inf, REQ_WATCH, true);
	}
}

static void process_done(struct kpx_k8s_source *src)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(src->multi, &left))) {
		struct informer *inf = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
				  (char **)&inf);
		if (inf && inf->easy == msg->easy_handle)
			transfer_done(inf, msg->data.result);
	}
	if (src->changed) {
		src->changed = false;
		if (src->on_change)
			src->on_change(src->arg);
	}
}

/* ---- curl multi <-> kpx_loop ------------------------------------------ */

static void on_socket_event(int fd, uint32_t events, void *arg)
{
	struct kpx_k8s_source *src = arg;
	int flags = 0, running;

	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(src->multi, fd, flags, &running);
	process_done(src);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp,
		     void *socketp)
{
	struct kpx_k8s_source *src = userp;
	uint32_t ev = 0;

	(void)e;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		kpx_loop_unwatch_fd(src->loop, s);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (kpx_loop_watch_fd(src->loop, s, ev, on_socket_event, src))
		kpx_err("k8s: cannot watch socket %d", (int)s);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct kpx_k8s_source *src = userp;

	(void)multi;
	if (timeout_ms < 0)
		kpx_timer_arm(src->curl_timer, 0);
	else /* 0 would disarm the timerfd; 1 ms is "now" enough. */
		kpx_timer_arm(src->curl_timer, timeout_ms ? timeout_ms : 1);
	return 0;
}

static void curl_timer_fired(void *arg)
{
	struct kpx_k8s_source *src = arg;
	int running;

	curl_multi_socket_action(src->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	process_done(src);
}

/* ---- public ----------------------------------------------------------- */

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int init_informer(struct kpx_k8s_source *src, enum kpx_kind kind,
			 const char *name, const char *path,
			 const char *query_key, const char *query_val)
{
	struct informer *inf = &src->inf[src->n_inf];
	int ret;

	inf->src = src;
	inf->kind = kind;
	inf->name = name;
	inf->path = path;
	if (query_key) {
		char *e = curl_easy_escape(NULL, query_val, 0);

		if (!e)
			return -ENOMEM;
		snprintf(inf->query, sizeof(inf->query), "%s=%s", query_key, e);
		curl_free(e);
	}
	ret = kpx_timer_new(src->loop, retry_fired, inf, &inf->retry_timer);
	if (!ret)
		ret = kpx_timer_new(src->loop, stall_fired, inf,
				    &inf->stall_timer);
	if (ret)
		return ret;
	src->n_inf++;
	return 0;
}

static const char *getenv_any(const char *a, const char *b)
{
	const char *v = getenv(a);

	return v && *v ? v : getenv(b);
}

/* proxy-url wins and is used for every host (http.ProxyURL); otherwise
 * the environment as Go reads it: upper case first, HTTP_PROXY ignored
 * under CGI (REQUEST_METHOD set), loopback never proxied. */
static int choose_proxy(struct kpx_k8s_source *src)
{
	const struct kpx_k8s_conn *c = &src->opts.conn;
	const char *from = "proxy-url", *at, *sep;
	int ret = 0;

	if (c->proxy_url[0]) {
		snprintf(src->proxy, sizeof(src->proxy), "%s", c->proxy_url);
	} else {
		ret = kpx_k8s_proxy_for(c->server,
					getenv_any("HTTPS_PROXY", "https_proxy"),
					getenv("REQUEST_METHOD") ?
						NULL :
						getenv_any("HTTP_PROXY", "http_proxy"),
					getenv_any("NO_PROXY", "no_proxy"),
					src->proxy, sizeof(src->proxy));
		from = "the environment";
	}
	if (ret) {
		kpx_err("k8s: cannot choose a proxy for %s: %s", c->server,
			strerror(-ret));
		return ret;
	}
	if (src->proxy[0]) {
		/* Never log credentials in the proxy URL. */
		sep = strstr(src->proxy, "://");
		at = strchr(src->proxy, '@');
		kpx_info("k8s: through proxy %.*s%s (from %s)",
			 sep ? (int)(sep + 3 - src->proxy) : 0, src->proxy,
			 at ? at + 1 : sep ? sep + 3 : src->proxy, from);
	}
	return 0;
}

/*
 * tls-server-name: libcurl has no option for "send this SNI and verify the
 * certificate against this name, but connect to the URL's host". So the
 * request URL names tls-server-name (curl takes SNI, certificate
 * verification and Host from the URL), and CURLOPT_CONNECT_TO sends the
 * connection to the server's real host and port; through a proxy, curl
 * asks the proxy for that real host too (CONNECT uses the connect-to
 * target). Only Host differs from client-go, which the API server ignores.
 * CURLOPT_RESOLVE would need an address, and the server may be a name.
 */
static int use_tls_server_name(struct kpx_k8s_source *src)
{
	const char *name = src->opts.conn.tls_server_name;
	char *sep = strstr(src->server, "://"), *hp, *path, *port;
	char host[300], rest[512], entry[700], url[sizeof(src->server)];
	size_t hl;
	int n;

	if (!sep || strchr(name, ':') || strchr(name, '/'))
		return -EINVAL;
	hp = sep + 3;
	path = hp + strcspn(hp, "/");
	snprintf(rest, sizeof(rest), "%s", path);
	hl = (size_t)(path - hp);
	if (hp[0] == '[') {
		char *rb = memchr(hp, ']', hl);

		if (!rb)
			return -EINVAL;
		port = rb + 1 < path && rb[1] == ':' ? rb + 2 : NULL;
		snprintf(host, sizeof(host), "%.*s", (int)(rb + 1 - hp), hp);
	} else {
		char *colon = memchr(hp, ':', hl);

		port = colon;
		if (colon)
			port++;
		snprintf(host, sizeof(host), "%.*s",
			 (int)(colon ? (size_t)(colon - hp) : hl), hp);
	}
	{
		char portbuf[16];

		if (port)
			snprintf(portbuf, sizeof(portbuf), "%.*s",
				 (int)(path - port), port);
		else
			snprintf(portbuf, sizeof(portbuf), "%s",
				 !strncasecmp(src->server, "https", 5) ? "443" : "80");
		n = snprintf(entry, sizeof(entry), "%s:%s:%s:%s", name, portbuf,
			     host, portbuf);
		if (n < 0 || (size_t)n >= sizeof(entry))
			return -ENAMETOOLONG;
		n = snprintf(url, sizeof(url), "%.*s%s:%s%s",
			     (int)(hp - src->server), src->server, name, portbuf,
			     rest);
		if (n < 0 || (size_t)n >= sizeof(url))
			return -ENAMETOOLONG;
	}
	src->connect_to = curl_slist_append(NULL, entry);
	if (!src->connect_to)
		return -ENOMEM;
	memcpy(src->server, url, (size_t)n + 1);
	kpx_info("k8s: TLS server name %s, connecting to %s", name, host);
	return 0;
}

int kpx_k8s_open(struct kpx_loop *loop, const struct kpx_k8s_options *opts,
		 struct kpx_store *store, kpx_change_fn on_change, void *arg,
		 struct kpx_k8s_source **out)
{
	struct kpx_k8s_source *src;
	struct kpx_k8s_conn *c;
	size_t len;
	int ret;

	if (!opts->conn.server[0] || strncmp(opts->conn.server, "http", 4)) {
		kpx_err("k8s: invalid API server URL \"%s\"", opts->conn.server);
		return -EINVAL;
	}
	if (!curl_inited) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
			kpx_err("k8s: curl_global_init failed");
			return -ENOMEM;
		}
		curl_inited = true;
	}
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->loop = loop;
	src->store = store;
	src->on_change = on_change;
	src->arg = arg;
	src->opts = *opts;
	c = &src->opts.conn;
	c->ca_data = dup_opt(opts->conn.ca_data);
	c->cert_data = dup_opt(opts->conn.cert_data);
	c->key_data = dup_opt(opts->conn.key_data);
	c->exec = dup_opt(opts->conn.exec);
	if ((opts->conn.ca_data && !c->ca_data) ||
	    (opts->conn.cert_data && !c->cert_data) ||
	    (opts->conn.key_data && !c->key_data) ||
	    (opts->conn.exec && !c->exec)) {
		ret = -ENOMEM;
		goto fail;
	}
	if (!src->opts.stall_ms)
		src->opts.stall_ms = DEFAULT_STALL_MS;
	if (!src->opts.backoff_reset_ms)
		src->opts.backoff_reset_ms = DEFAULT_BACKOFF_RESET_MS;
	if (!src->opts.backoff_min_ms)
		src->opts.backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
	if (!src->opts.backoff_max_ms)
		src->opts.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
	if (src->opts.backoff_max_ms < src->opts.backoff_min_ms)
		src->opts.backoff_max_ms = src->opts.backoff_min_ms;
	if (!src->opts.page_limit)
		src->opts.page_limit = DEFAULT_PAGE_LIMIT;
	src->seed = (unsigned)(kpx_now_ms() ^ ((unsigned)getpid() << 16));
	snprintf(src->server, sizeof(src->server), "%s", c->server);
	len = strlen(src->server);
	while (len && src->server[len - 1] == '/')
		src->server[--len] = '\0';
	{
		/* client-go labels requests with the URL's host[:port]. */
		const char *h = strstr(src->server, "://");

		h = h ? h + 3 : src->server;
		snprintf(src->rest.host, sizeof(src->rest.host), "%.*s",
			 (int)strcspn(h, "/"), h);
		memcpy(src->rest.bounds, rest_bounds, sizeof(rest_bounds));
	}
	ret = choose_proxy(src);
	if (!ret && c->tls_server_name[0])
		ret = use_tls_server_name(src);
	if (ret)
		goto fail;

	src->multi = curl_multi_init();
	if (!src->multi) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = kpx_timer_new(loop, curl_timer_fired, src, &src->curl_timer);
	if (ret)
		goto fail;
	curl_multi_setopt(src->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(src->multi, CURLMOPT_SOCKETDATA, src);
	curl_multi_setopt(src->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(src->multi, CURLMOPT_TIMERDATA, src);

	ret = init_informer(src, KPX_KIND_SERVICE, "services", "/api/v1/services",
			    "labelSelector",
			    "!service.kubernetes.io/service-proxy-name,"
			    "!service.kubernetes.io/headless");
	if (!ret)
		ret = init_informer(src, KPX_KIND_SLICE, "endpointslices",
				    "/apis/discovery.k8s.io/v1/endpointslices",
				    "labelSelector",
				    "!service.kubernetes.io/service-proxy-name,"
				    "!service.kubernetes.io/headless");
	if (!ret && src->opts.node_name[0]) {
		char sel[KPX_NAME_MAX + 32];

		snprintf(sel, sizeof(sel), "metadata.name=%s",
			 src->opts.node_name);
		ret = init_informer(src, KPX_KIND_NODE, "node", "/api/v1/nodes",
				    "fieldSelector", sel);
	}
	if (ret)
		goto fail;
	kpx_info("k8s: watching %s (services, endpointslices%s%s)", src->server,
		 src->opts.node_name[0] ? ", node " : "", src->opts.node_name);
	for (int i = 0; i < src->n_inf; i++)
		start_request(&src->inf[i], REQ_LIST);
	*out = src;
	return 0;
fail:
	kpx_err("k8s: cannot start the API source: %s", strerror(-ret));
	kpx_k8s_close(src);
	return ret;
}

void kpx_k8s_close(struct kpx_k8s_source *src)
{
	if (!src)
		return;
	for (int i = 0; i < KPX_KIND_COUNT; i++) {
		struct informer *inf = &src->inf[i];

		if (inf->src)
			end_request(inf);
		kpx_timer_free(inf->retry_timer);
		kpx_timer_free(inf->stall_timer);
		free(inf->cont);
	}
	if (src->multi)
		curl_multi_cleanup(src->multi);
	kpx_timer_free(src->curl_timer);
	curl_slist_free_all(src->connect_to);
	kpx_k8s_exec_cred_clear(&src->cred);
	kpx_k8s_conn_clear(&src->opts.conn);
	free(src);
}

struct json_object *kpx_k8s_status(const struct kpx_k8s_source *src)
{
	struct json_object *o, *w;

	if (!src)
		return NULL;
	o = json_object_new_object();
	w = json_object_new_object();
	json_object_object_add(o, "kind", json_object_new_string("api"));
	json_object_object_add(o, "server", json_object_new_string(src->server));
	if (src->opts.conn.exec)
		json_object_object_add(o, "exec_runs",
				       json_object_new_int64((int64_t)src->exec_runs));
	json_object_object_add(o, "proxy", json_object_new_boolean(src->proxy[0]));
	for (int i = 0; i < src->n_inf; i++) {
		const struct informer *inf = &src->inf[i];
		struct json_object *x = json_object_new_object();

		json_object_object_add(x, "state",
				       json_object_new_string(state_name(inf->state)));
		json_object_object_add(x, "resource_version",
				       json_object_new_string(inf->rv));
		json_object_object_add(x, "synced",
				       json_object_new_boolean(kpx_store_kind_synced(
					       src->store, inf->kind)));
		json_object_object_add(x, "lists", json_object_new_int64(inf->lists));
		json_object_object_add(x, "watches",
				       json_object_new_int64(inf->watches));
		json_object_object_add(x, "watch_lists",
				       json_object_new_int64(inf->watch_lists));
		json_object_object_add(x, "initial_list",
				       json_object_new_string(
					       inf->watchlist_off ||
							       src->opts.no_watch_list ?
						       "paginated" :
						       "streaming"));
		json_object_object_add(x, "events", json_object_new_int64(inf->events));
		json_object_object_add(x, "relists",
				       json_object_new_int64(inf->relists));
		json_object_object_add(x, "errors", json_object_new_int64(inf->errors));
		json_object_object_add(x, "last_error",
				       json_object_new_string(inf->last_error));
		json_object_object_add(w, inf->name, x);
	}
	json_object_object_add(o, "watches", w);
	return o;
}

int kpx_k8s_rest_stats(const struct kpx_k8s_source *src,
		       struct kpx_k8s_rest_stats *out)
{
	uint64_t acc = 0;

	if (!src)
		return -ENOENT;
	*out = src->rest;
	for (int i = 0; i < KPX_K8S_REST_BUCKETS; i++) {
		acc += src->rest.buckets[i];
		out->buckets[i] = acc;
	}
	return 0;
}

/* ---- the watch-stream parser alone (tests, tests/fuzz) ----------------- */

int kpx_k8s_watch_feed(struct kpx_store *store, enum kpx_kind kind,
		       const char *body, size_t len, size_t chunk, char *err,
		       size_t errlen)
{
	struct kpx_k8s_source *src;
	struct informer *inf;
	int ret = 0;

	if ((unsigned)kind >= KPX_KIND_COUNT)
		return -EINVAL;
	/* Heap: the source holds the connection's PATH_MAX-sized fields. */
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->store = store;
	inf = &src->inf[kind];
	inf->src = src;
	inf->kind = kind;
	inf->name = "watch";
	inf->req = REQ_WATCH;
	inf->tok = json_tokener_new();
	if (!inf->tok) {
		free(src);
		return -ENOMEM;
	}
	if (!chunk)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;

		if (feed_watch(inf, body + off, n) < 0) {
			snprintf(err, errlen, "%s", inf->abort_msg);
			ret = -EPROTO;
			break;
		}
	}
	json_tokener_free(inf->tok);
	free(src);
	return ret;
}
