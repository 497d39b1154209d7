// SPDX-License-Identifier: Apache-2.0
/*
 * TEMPORARY weak placeholders so the tree links while modules land in
 * parallel. Each real module overrides these with strong definitions.
 * This file is deleted once every module exists.
 */
#include <errno.h>
#include <stddef.h>

#include "agent/agent.h"
#include "agent/serve.h"
#include "cli/cli.h"
#include "k8s/client.h"
#include "k8s/manifests.h"
#include "model/store.h"
#include "plan/plan.h"

#define WEAK __attribute__((weak))

WEAK int kpx_service_decode(struct json_object *o, struct kpx_service **out, char *e, size_t l) { (void)o; (void)out; (void)e; (void)l; return -ENOSYS; }
WEAK int kpx_slice_decode(struct json_object *o, struct kpx_endpoint_slice **out, char *e, size_t l) { (void)o; (void)out; (void)e; (void)l; return -ENOSYS; }
WEAK int kpx_node_decode(struct json_object *o, struct kpx_node **out, char *e, size_t l) { (void)o; (void)out; (void)e; (void)l; return -ENOSYS; }
WEAK void kpx_object_free(enum kpx_kind k, void *o) { (void)k; (void)o; }
WEAK const char *kpx_proto_name(uint8_t p) { (void)p; return "?"; }

WEAK int kpx_manifests_load(const char *d, struct kpx_store *s, size_t *n) { (void)d; (void)s; (void)n; return -ENOSYS; }
WEAK int kpx_manifests_open(struct kpx_loop *l, const char *d, struct kpx_store *s, kpx_change_fn f, void *a, struct kpx_manifests_source **o) { (void)l; (void)d; (void)s; (void)f; (void)a; (void)o; return -ENOSYS; }
WEAK void kpx_manifests_close(struct kpx_manifests_source *s) { (void)s; }
WEAK struct json_object *kpx_manifests_status(const struct kpx_manifests_source *s) { (void)s; return NULL; }

WEAK int kpx_kubeconfig_load(const char *p, struct kpx_k8s_conn *c, char *e, size_t l) { (void)p; (void)c; (void)e; (void)l; return -ENOSYS; }
WEAK int kpx_k8s_in_cluster(struct kpx_k8s_conn *c, char *e, size_t l) { (void)c; (void)e; (void)l; return -ENOSYS; }
WEAK void kpx_k8s_conn_clear(struct kpx_k8s_conn *c) { (void)c; }
WEAK int kpx_k8s_open(struct kpx_loop *l, const struct kpx_k8s_options *o, struct kpx_store *s, kpx_change_fn f, void *a, struct kpx_k8s_source **out) { (void)l; (void)o; (void)s; (void)f; (void)a; (void)out; return -ENOSYS; }
WEAK void kpx_k8s_close(struct kpx_k8s_source *s) { (void)s; }
WEAK struct json_object *kpx_k8s_status(const struct kpx_k8s_source *s) { (void)s; return NULL; }

WEAK int kpx_store_new(struct kpx_store **o) { (void)o; return -ENOSYS; }
WEAK void kpx_store_free(struct kpx_store *s) { (void)s; }
WEAK bool kpx_store_kind_synced(const struct kpx_store *s, enum kpx_kind k) { (void)s; (void)k; return false; }
WEAK const struct kpx_node *kpx_store_node(const struct kpx_store *s) { (void)s; return NULL; }
WEAK bool kpx_store_dirty(const struct kpx_store *s) { (void)s; return false; }
WEAK void kpx_store_clear_dirty(struct kpx_store *s) { (void)s; }
WEAK void kpx_store_get_stats(const struct kpx_store *s, struct kpx_store_stats *o) { (void)s; (void)o; }

WEAK int kpx_plan_build(const struct kpx_store *s, const struct kpx_plan_input *i, struct kpx_plan **o) { (void)s; (void)i; (void)o; return -ENOSYS; }
WEAK void kpx_plan_free(struct kpx_plan *p) { (void)p; }
WEAK struct json_object *kpx_plan_to_json(const struct kpx_plan *p) { (void)p; return NULL; }

WEAK int kpx_config_load_file(struct kpx_config *c, const char *p) { (void)c; (void)p; return -ENOSYS; }

WEAK int kpx_http_open(struct kpx_agent *a, const char *b, enum kpx_http_role r, struct kpx_http **o) { (void)a; (void)b; (void)r; (void)o; return -ENOSYS; }
WEAK void kpx_http_close(struct kpx_http *h) { (void)h; }
WEAK int kpx_status_server_open(struct kpx_agent *a, const char *p, struct kpx_status_server **o) { (void)a; (void)p; (void)o; return -ENOSYS; }
WEAK void kpx_status_server_close(struct kpx_status_server *s) { (void)s; }
WEAK int kpx_hcnp_new(struct kpx_agent *a, struct kpx_hcnp **o) { (void)a; (void)o; return -ENOSYS; }
WEAK void kpx_hcnp_update(struct kpx_hcnp *h, const struct kpx_plan *p) { (void)h; (void)p; }
WEAK void kpx_hcnp_free(struct kpx_hcnp *h) { (void)h; }

WEAK int kpx_cmd_status(int argc, char **argv) { (void)argc; (void)argv; return 3; }
WEAK int kpx_cmd_services(int argc, char **argv) { (void)argc; (void)argv; return 3; }
WEAK int kpx_cmd_plan(int argc, char **argv) { (void)argc; (void)argv; return 3; }

WEAK const struct kpx_backend_ops kpx_bpf_backend = { .name = "bpf" };
WEAK const struct kpx_backend_ops kpx_nft_backend = { .name = "nft" };
WEAK int kpx_agent_main(int argc, char **argv) { (void)argc; (void)argv; return 3; }
WEAK int kpx_cmd_cleanup(int argc, char **argv) { (void)argc; (void)argv; return 3; }

#include "bpf/nodeport.h"
WEAK int kpx_nodeport_open(const struct kpx_config *c, struct kpx_nodeport **o) { (void)c; (void)o; return -ENOSYS; }
WEAK void kpx_nodeport_tick(struct kpx_nodeport *n) { (void)n; }
WEAK void kpx_nodeport_close(struct kpx_nodeport *n) { (void)n; }
WEAK int kpx_nodeport_cleanup(const struct kpx_config *c) { (void)c; return -ENOSYS; }
WEAK int kpx_nodeport_dump(const struct kpx_config *c, struct json_object **o) { (void)c; (void)o; return -ENOSYS; }
WEAK int kpx_plan_input_from_config(const struct kpx_config *c, const struct kpx_node *n, struct kpx_plan_input *o) { (void)c; (void)n; (void)o; return -ENOSYS; }
