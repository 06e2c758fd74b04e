/* test_client_sampler_profile.c — the sampler's aggregation and pprof
 * encoding: stacks counted by address, names from dladdr, every field a
 * pprof reader needs, a second interval after a reset, and C++ names kept
 * mangled until the process has the C++ runtime's demangler. */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <stdlib.h>

#include "client/sampler_profile.h"
#include "common/proto/pprof.pb-c.h"

static Perftools__Profiles__Profile *encode(flamedb_sampler_profile_t *p, int64_t start)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(flamedb_sampler_profile_encode(p, 10000000, start, 2000000000, &b), 0);
    Perftools__Profiles__Profile *pr = perftools__profiles__profile__unpack(NULL, b.len, b.data);
    buf_free(&b);
    CHECK(pr != NULL);
    return pr;
}

static const char *str(const Perftools__Profiles__Profile *pr, int64_t i)
{
    static char s[512];
    if (i < 0 || (size_t)i >= pr->n_string_table) return "(out of range)";
    snprintf(s, sizeof s, "%.*s", (int)pr->string_table[i].len, pr->string_table[i].data);
    return s;
}

/* The name of the function of location id `loc`. */
static const char *loc_name(const Perftools__Profiles__Profile *pr, uint64_t loc)
{
    if (loc < 1 || loc > pr->n_location || pr->location[loc - 1]->id != loc ||
        pr->location[loc - 1]->n_line != 1)
        return "(bad location)";
    uint64_t fn = pr->location[loc - 1]->line[0]->function_id;
    if (fn < 1 || fn > pr->n_function || pr->function[fn - 1]->id != fn) return "(bad function)";
    return str(pr, pr->function[fn - 1]->name);
}

static void local_code(void) {}

static void test_two_stacks(void)
{
    flamedb_sampler_profile_t *p = flamedb_sampler_profile_new();
    uintptr_t a = (uintptr_t)&div + 1, b = (uintptr_t)&abs + 1, c = (uintptr_t)&local_code;
    uintptr_t ab[] = {a, b}, only_c[] = {c};
    CHECK_EQ_INT(flamedb_sampler_profile_add(p, ab, 2, 3), 0);
    CHECK_EQ_INT(flamedb_sampler_profile_add(p, only_c, 1, 1), 0);
    CHECK_EQ_INT(flamedb_sampler_profile_add(p, ab, 2, 2), 0);
    CHECK_EQ_INT(flamedb_sampler_profile_samples(p), 6);
    Perftools__Profiles__Profile *pr = encode(p, 1700000000000000000LL);
    if (!pr) return;
    CHECK_EQ_INT(pr->n_sample_type, 2);
    CHECK_EQ_STR(str(pr, pr->sample_type[0]->type), "samples");
    CHECK_EQ_STR(str(pr, pr->sample_type[0]->unit), "count");
    CHECK_EQ_STR(str(pr, pr->sample_type[1]->type), "cpu");
    CHECK_EQ_STR(str(pr, pr->sample_type[1]->unit), "nanoseconds");
    CHECK_EQ_STR(str(pr, pr->period_type->type), "cpu");
    CHECK_EQ_INT(pr->period, 10000000);
    CHECK_EQ_INT(pr->time_nanos, 1700000000000000000LL);
    CHECK_EQ_INT(pr->duration_nanos, 2000000000);
    CHECK_EQ_INT(pr->n_sample, 2);
    CHECK_EQ_INT(pr->n_location, 3);
    CHECK_EQ_INT(pr->n_function, 3);
    CHECK_EQ_INT(pr->sample[0]->n_location_id, 2);
    CHECK_EQ_STR(loc_name(pr, pr->sample[0]->location_id[0]), "div");
    CHECK_EQ_STR(loc_name(pr, pr->sample[0]->location_id[1]), "abs");
    CHECK_EQ_INT(pr->sample[0]->value[0], 5);
    CHECK_EQ_INT(pr->sample[0]->value[1], 50000000);
    CHECK_EQ_INT(pr->sample[1]->value[0], 1);
    /* a static function: module+0xOFFSET */
    const char *n = loc_name(pr, pr->sample[1]->location_id[0]);
    CHECK(strncmp(n, "test_client_sampler_profile+0x", 30) == 0);
    CHECK_EQ_INT(pr->location[0]->address, a);
    perftools__profiles__profile__free_unpacked(pr, NULL);

    /* next interval: only what was added since, ids from 1 again */
    flamedb_sampler_profile_reset(p);
    CHECK_EQ_INT(flamedb_sampler_profile_samples(p), 0);
    CHECK_EQ_INT(flamedb_sampler_profile_add(p, ab + 1, 1, 7), 0);
    pr = encode(p, 1);
    if (pr) {
        CHECK_EQ_INT(pr->n_sample, 1);
        CHECK_EQ_INT(pr->n_location, 1);
        CHECK_EQ_INT(pr->n_function, 1);
        CHECK_EQ_STR(loc_name(pr, pr->sample[0]->location_id[0]), "abs");
        CHECK_EQ_INT(pr->sample[0]->value[0], 7);
        perftools__profiles__profile__free_unpacked(pr, NULL);
    }
    flamedb_sampler_profile_free(p);
}

/* Enough distinct stacks and addresses to grow every table several times. */
static void test_many(void)
{
    flamedb_sampler_profile_t *p = flamedb_sampler_profile_new();
    enum { N = 5000 };
    for (int round = 0; round < 2; round++)
        for (uintptr_t i = 0; i < N; i++) {
            uintptr_t f[2] = {0x1000 + i, 0x1000 + (i + 1) % N};
            CHECK_EQ_INT(flamedb_sampler_profile_add(p, f, 2, 1), 0);
        }
    CHECK_EQ_INT(flamedb_sampler_profile_samples(p), 2 * N);
    Perftools__Profiles__Profile *pr = encode(p, 1);
    if (!pr) return;
    CHECK_EQ_INT(pr->n_sample, N);
    CHECK_EQ_INT(pr->n_location, N);
    CHECK_EQ_INT(pr->n_function, N);
    uint64_t total = 0, bad = 0;
    for (size_t i = 0; i < pr->n_sample; i++) {
        total += pr->sample[i]->value[0];
        char want[32];
        snprintf(want, sizeof want, "0x%zx", (size_t)(0x1000 + i));
        if (strcmp(loc_name(pr, pr->sample[i]->location_id[0]), want) != 0) bad++;
    }
    CHECK_EQ_INT(total, 2 * N);
    CHECK_EQ_INT(bad, 0);
    perftools__profiles__profile__free_unpacked(pr, NULL);
    flamedb_sampler_profile_free(p);
}

/* The name the profile gives addr (one stack of one frame). */
static void name_of(uintptr_t addr, char *out, size_t n)
{
    flamedb_sampler_profile_t *p = flamedb_sampler_profile_new();
    CHECK_EQ_INT(flamedb_sampler_profile_add(p, &addr, 1, 1), 0);
    Perftools__Profiles__Profile *pr = encode(p, 1);
    snprintf(out, n, "%s", pr ? loc_name(pr, pr->sample[0]->location_id[0]) : "(none)");
    if (pr) perftools__profiles__profile__free_unpacked(pr, NULL);
    flamedb_sampler_profile_free(p);
}

/* std::exception::~exception() in libstdc++, loaded locally first (its
 * __cxa_demangle not visible to the process: the mangled name stays), then
 * made global (demangled). This test program does not link libstdc++. */
static void test_demangle(void)
{
    void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("skipped test_demangle: no libstdc++.so.6\n");
        return;
    }
    void *dtor = dlsym(h, "_ZNSt9exceptionD1Ev");
    CHECK(dtor != NULL);
    char name[1024];
    /* AddressSanitizer's runtime brings a demangler of its own: the process
     * has one before libstdc++ is global, and the mangled case cannot be seen */
    int had_demangler = dlsym(RTLD_DEFAULT, "__cxa_demangle") != NULL;
    if (had_demangler)
        printf("test_demangle: the process has a demangler already (sanitizer "
               "runtime): the mangled case is not checked\n");
    if (!had_demangler) {
        name_of((uintptr_t)dtor, name, sizeof name);
        /* D1 and D2 (complete and base destructor) share the address */
        CHECK(strcmp(name, "_ZNSt9exceptionD1Ev") == 0 || strcmp(name, "_ZNSt9exceptionD2Ev") == 0);
    }
    void *g = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    CHECK(g != NULL && dlsym(RTLD_DEFAULT, "__cxa_demangle") != NULL);
    name_of((uintptr_t)dtor, name, sizeof name);
    CHECK_EQ_STR(name, "std::exception::~exception()");
    name_of((uintptr_t)&div + 1, name, sizeof name); /* C names as they were */
    CHECK_EQ_STR(name, "div");
    if (g) dlclose(g);
    dlclose(h);
}

int main(void)
{
    test_two_stacks();
    test_many();
    test_demangle();
    return check_exit();
}
