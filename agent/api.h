/*
 * api.h: the plan-facing HTTP API (SPEC.md "HTTP API", "JSON shapes"), the
 * dashboard page and the fleet-progress metrics, all answered from the
 * engine's replicated view, so any node answers for the whole fleet.
 *
 * Routes (registered by api_register):
 *   GET  /v1/plans                          {"plans": [{"id","name","state","total","counts"}]}
 *   POST /v1/plans                          signed plan -> engine_submit_plan
 *   GET  /v1/plans/ID                       one plan: counts, progress, completed
 *   GET  /v1/plans/ID/targets?state=&limit=&cursor=
 *   GET  /v1/plans/ID/log?target=REF        200 {"target","node","log"} or 202 fetching
 *   GET  /v1/plans/ID/report?format=md|json
 *   POST /v1/plans/ID/{pause,resume,cancel,retry,approve,mark}
 *   POST /v1/nodes/NAME/{drain,force-leave}
 *   GET  /v1/audit
 *   GET  /v1/status                         node, members, plans, needs_human
 *   GET  /                                  the dashboard (dashboard.c)
 * ID is a full plan id, a unique prefix (6+ hex digits) or a plan name.
 * Every handler runs on the loop thread and answers from memory.
 *
 * Metrics (refreshed at each scrape): gaggle_targets{plan,state} and
 * gaggle_plan_progress_ratio{plan} (this node's view of the fleet, at most
 * API_PLANS_METRICS_MAX plans, active ones first, labelled by plan name),
 * gaggle_targets_owned and gaggle_leases_held (targets this node holds,
 * running or waiting to retry), gaggle_fleet_{claims,conflicts,
 * fenced_results}_total (the fleet core's counters on this node).
 *
 * There is one API per process (the daemon has one agent): its context is
 * static storage, so routes and the metrics collector never point at freed
 * memory. The engine and cluster given must stay valid until the agent's
 * HTTP server has stopped.
 */
#ifndef GG_API_H
#define GG_API_H

#include "engine.h"
#include "http.h"
#include "report.h"

#include <stddef.h>

typedef struct _agent_t agent_t;
typedef struct _cluster_t cluster_t;

#define API_PLANS_METRICS_MAX 64         /* plans labelled in gaggle_targets{plan,...} */
#define API_NEEDS_HUMAN_MAX   100        /* targets listed in /v1/status needs_human */
#define API_TARGETS_LIMIT     100        /* default page of /v1/plans/ID/targets */
#define API_TARGETS_LIMIT_MAX 10000      /* largest page */
#define API_AUDIT_MAX         10000      /* audit entries served */
#define API_LOG_MAX           (1u << 20) /* bytes of a log served */
#define API_COMMAND_SKEW_S    600        /* drain: a command's `issued` must be this close */

/* Registers every route above with the agent's HTTP server and the metrics
 * collector with its registry. GET /v1/status and GET / are routed only when
 * the agent has not routed them itself (GG_EEXIST is then logged and
 * ignored: the agent may delegate to api_get_status / api_get_index).
 * Returns 0, GG_EINVAL (a NULL argument) or the route table's error. */
int api_register(agent_t *agent, engine_t *engine, cluster_t *cluster);

/* The handlers of GET /v1/status and GET / (arg is ignored: they use the
 * context of api_register; before it they answer 503). */
int api_get_status(void *arg, const http_request_t *req, http_response_t *resp);
int api_get_index(void *arg, const http_request_t *req, http_response_t *resp);

/* Fills *in with a plan's report input from the engine's view. Strings point
 * into the engine and the plan (valid until the loop next runs); the targets
 * array is malloc'd: release with api_report_input_free. Returns 0 or
 * GG_ENOMEM. */
int api_report_input(engine_t *engine, const engine_plan_t *p, report_input_t *in);
void api_report_input_free(report_input_t *in);

/* Writes a plan's report into dir as <name>-<first 12 id digits>.md and
 * .json (each to a temporary file, then renamed into place). Meant for the
 * engine at a plan's completion when spec.docs.report is set. Returns 0, or
 * GG_EIO / GG_ENOMEM with one line in err. */
int api_report_write(engine_t *engine, const engine_plan_t *p, const char *dir, char *err,
                     size_t errlen);

/* The dashboard page (dashboard.c): a self-contained HTML document for this
 * node (no external assets) whose inline script polls /v1/status every 2 s.
 * Returns 0 with a malloc'd page in *html (length in *len), or GG_ENOMEM. */
int dashboard_render(const char *node_name, const char *node_id, char **html, size_t *len);

#endif
