/* Unit tests for common/metrics.h: the text format, order, sources, limits. */
#include <stddef.h>
#include <string.h>

#include "common/err.h"
#include "common/metrics.h"
#include "check.h"

typedef struct stats {
    uint64_t a, b;
} stats_t;

static double read_half(const void *ctx)
{
    return *(const double *)ctx / 2;
}

static int family(const void *ctx, buf_t *out)
{
    return buf_printf(out, "x_total{k=\"%s\"} 1\n", (const char *)ctx);
}

int main(void)
{
    stats_t st = {3, 18446744073709551615ULL};
    static const metrics_u64_def_t defs[] = {
        METRICS_U64_DEF(stats_t, a, "t_a_total", "A things."),
        {"t_b", "B now.", METRICS_GAUGE, offsetof(stats_t, b)},
    };
    double d = 2.5;
    uint64_t g = 7;
    metrics_registry_t r;
    metrics_registry_init(&r);
    metrics_add_render(&r, family, "v");
    metrics_add_u64_array(&r, defs, 2, &st);
    metrics_add_u64(&r, "t_g", "G.", METRICS_GAUGE, &g);
    metrics_add_double(&r, "t_d", "D.", METRICS_GAUGE, &d);
    metrics_add_read(&r, "t_h", "H.", METRICS_COUNTER, read_half, &d);
    st.a = 4; /* values are read at render time */
    buf_t out;
    buf_init(&out, 4096);
    CHECK_EQ_INT(metrics_registry_render(&r, &out), ERR_OK);
    CHECK_EQ_STR((char *)out.data,
                 "x_total{k=\"v\"} 1\n"
                 "# HELP t_a_total A things.\n# TYPE t_a_total counter\nt_a_total 4\n"
                 "# HELP t_b B now.\n# TYPE t_b gauge\nt_b 1.8446744073709552e+19\n"
                 "# HELP t_g G.\n# TYPE t_g gauge\nt_g 7\n"
                 "# HELP t_d D.\n# TYPE t_d gauge\nt_d 2.5\n"
                 "# HELP t_h H.\n# TYPE t_h counter\nt_h 1.25\n");
    buf_free(&out);
    buf_init(&out, 40); /* a full buffer is an error, not a cut-off answer */
    CHECK_EQ_INT(metrics_registry_render(&r, &out), ERR_TOO_LARGE);
    buf_free(&out);
    metrics_registry_free(&r);
    CHECK_EQ_INT(r.n, 0);
    return check_exit();
}
