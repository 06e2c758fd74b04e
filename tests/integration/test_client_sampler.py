"""test_client_sampler.py — libflamedb's in-process sampler (flamedb_sampler.h):
a C program linked against the built libflamedb.so burns CPU in two named
functions with the sampler running, against a real node; the node must then
hold a CPU profile with both functions in about the time the program spent in
each, as many samples as CPU seconds × rate, and its labels. A node that is
down makes pushes fail without stopping the program; one that is down for a
few push intervals and comes back gets the samples taken meanwhile. A C++
program's frames are named as in C++."""
import os
import shutil
import subprocess
import tempfile
import time

import harness
from harness import Node, run_tests, unique

CPU_NS = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SAMPLES = "process_cpu:samples:count:cpu:nanoseconds"
RATE = 100

# burn_alpha gets twice the CPU time of burn_beta; the program prints the
# process CPU time between start and stop, and exits 4 when the last push failed.
BURN = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "flamedb_sampler.h"

static double cpu_now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile double sink;

__attribute__((noinline)) void burn_alpha(double secs)
{
    double end = cpu_now(CLOCK_THREAD_CPUTIME_ID) + secs;
    do {
        for (int i = 0; i < 20000; i++) sink = sink * 1.0000001 + i;
    } while (cpu_now(CLOCK_THREAD_CPUTIME_ID) < end);
}

__attribute__((noinline)) void burn_beta(double secs)
{
    double end = cpu_now(CLOCK_THREAD_CPUTIME_ID) + secs;
    do {
        for (int i = 0; i < 20000; i++) sink = sink * 0.9999999 - i;
    } while (cpu_now(CLOCK_THREAD_CPUTIME_ID) < end);
}

__attribute__((noinline)) void *beta_thread(void *arg)
{
    burn_beta(0.8);
    return NULL;
}

__attribute__((noinline)) void *short_thread(void *arg)
{
    burn_beta(0.095);
    return NULL;
}

static int failures;
static void on_error(void *arg, int err, const char *msg)
{
    failures++;
    fprintf(stderr, "push failed: %d %s\n", err, msg);
}

int main(int argc, char **argv)
{
    flamedb_client_t *c;
    flamedb_sampler_t *s;
    char err[256];
    if (flamedb_client_new(argv[1], NULL, &c, err, sizeof err)) {
        fprintf(stderr, "client: %s\n", err);
        return 2;
    }
    flamedb_sampler_opts_t o = {.app_name = argv[2], .labels = "env=test,team=perf",
                                .push_interval_ms = 1000, .on_push_error = on_error,
                                .retry_max_ms = 2000};
    if (flamedb_sampler_start(c, &o, &s, err, sizeof err)) {
        fprintf(stderr, "start: %s\n", err);
        return 3;
    }
    flamedb_sampler_t *second;
    if (flamedb_sampler_start(c, &o, &second, err, sizeof err) != FLAMEDB_ERR_INVALID_ARGUMENT)
        return 5; /* one sampler per process */
    double t0 = cpu_now(CLOCK_PROCESS_CPUTIME_ID);
    if (argc > 3 && strcmp(argv[3], "threads") == 0) { /* the same split, beta in a thread */
        pthread_t th;
        if (pthread_create(&th, NULL, beta_thread, NULL)) return 6;
        burn_alpha(1.6);
        pthread_join(th, NULL);
    } else if (argc > 3 && strcmp(argv[3], "short") == 0) { /* threads of 95 ms, in turn */
        for (int i = 0; i < 20; i++) {
            pthread_t th;
            if (pthread_create(&th, NULL, short_thread, NULL)) return 6;
            pthread_join(th, NULL);
        }
    } else if (argc > 4 && strcmp(argv[3], "until") == 0) { /* rounds until argv[4] exists */
        while (access(argv[4], F_OK) != 0) {
            burn_alpha(0.2);
            burn_beta(0.1);
        }
    } else {
        for (int round = 0; round < 4; round++) {
            burn_alpha(0.4);
            burn_beta(0.2);
        }
    }
    double t1 = cpu_now(CLOCK_PROCESS_CPUTIME_ID);
    flamedb_sampler_stats_t st;
    flamedb_sampler_stats(s, &st);
    int rc = flamedb_sampler_stop(s);
    printf("cpu_ns %.0f samples %llu dropped %llu pushes %llu failures %d lost %llu\n",
           (t1 - t0) * 1e9, (unsigned long long)st.samples, (unsigned long long)st.dropped,
           (unsigned long long)st.pushes, failures, (unsigned long long)st.lost_profiles);
    flamedb_client_free(c);
    return rc ? 4 : 0;
}
"""


def build_burn(tmp):
    # -rdynamic: dladdr names the program's own functions only when exported
    return harness.build_c_program(tmp, "burn", BURN, ["-O2", "-rdynamic", "-pthread"])


def run_burn(exe, url, app, *extra):
    p = subprocess.run([exe, url, app] + list(extra), capture_output=True, timeout=300)
    words = p.stdout.split()
    stats = {words[i].decode(): float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return p, stats


def folded(n, query):
    r = n.render(query, fmt="folded")
    assert r.status == 200, r
    total = {}
    for line in r.body.decode().splitlines():
        stack, _, value = line.rpartition(" ")
        total[stack] = total.get(stack, 0) + int(value)
    return total


def in_function(stacks, name):
    return sum(v for s, v in stacks.items() if name in s.split(";"))


def check_profile(n, app, st, min_pushes, ratio):
    """The node holds what the program sampled: samples ~ CPU seconds x
    RATE, both functions in about their 2:1 share of the CPU, the labels."""
    assert st["dropped"] == 0 and st["failures"] == 0 and st["pushes"] >= min_pushes, st
    sel = '{service_name="%s",env="test",team="perf"}' % app
    samples = n.total(SAMPLES + sel)
    # one sample per 1/RATE s of process CPU (timer ticks land late by up to a
    # kernel tick; the period is kept, so only the ends are off)
    expect = st["cpu_ns"] / 1e9 * RATE
    assert 0.85 * expect <= samples <= 1.15 * expect + 3, (samples, expect, st)
    stacks = folded(n, CPU_NS + sel)
    total = sum(stacks.values())
    assert total == samples * (10**9 // RATE), (total, samples)
    alpha, beta = in_function(stacks, "burn_alpha"), in_function(stacks, "burn_beta")
    assert alpha > 0 and beta > 0, sorted(stacks.items(), key=lambda kv: -kv[1])[:10]
    assert ratio[0] <= alpha / beta <= ratio[1], (alpha, beta)  # 2 by construction
    assert alpha + beta >= 0.8 * total, (alpha, beta, total)
    assert any(s.split(";")[-1] == "burn_alpha" for s in stacks), stacks


def test_sampler_profiles_the_program():
    tmp = tempfile.mkdtemp(prefix="flamedb-sampler-")
    try:
        exe = build_burn(tmp)
        with Node() as n:
            app = unique("sampled")
            p, st = run_burn(exe, "http://127.0.0.1:%d" % n.port, app)
            assert p.returncode == 0, p
            check_profile(n, app, st, 2, (1.5, 2.6))  # pushes: during the run, and by stop
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_sampler_profiles_every_thread():
    """burn_beta in a second thread: each thread's CPU time is sampled in that
    thread, and both stacks are unwound whole (libc's thread start,
    beta_thread, burn_beta)."""
    tmp = tempfile.mkdtemp(prefix="flamedb-sampler-")
    try:
        exe = build_burn(tmp)
        with Node() as n:
            app = unique("threaded")
            p, st = run_burn(exe, "http://127.0.0.1:%d" % n.port, app, "threads")
            assert p.returncode == 0, p
            # two cores: the run may last only 1.6 s. Each thread has its own timer
            # (a new one from the sampler's next scan, within 50 ms)
            check_profile(n, app, st, 1, (1.5, 2.6))
            stacks = folded(n, CPU_NS + '{service_name="%s"}' % app)
            assert any(s.endswith(";beta_thread;burn_beta") for s in stacks), stacks
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for(cond, what, secs=60):
    deadline = time.monotonic() + secs
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_sampler_retries_while_node_is_down():
    """The node stops for a few push intervals and comes back on the same
    port and data dir: the profiles that failed meanwhile are kept, retried
    with backoff and arrive, so the node ends up with every sample."""
    tmp = tempfile.mkdtemp(prefix="flamedb-sampler-")
    data = tempfile.mkdtemp(prefix="flamedb-sampler-data-")
    proc = None
    try:
        exe = build_burn(tmp)
        stop_file = os.path.join(tmp, "stop")
        app = unique("retried")
        sel = '{service_name="%s",env="test",team="perf"}' % app
        n = Node(data_dir=data).start()
        port = n.port
        proc = subprocess.Popen([exe, n.url(), app, "until", stop_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: n.total(SAMPLES + sel) > 0, "no first push")
        n.stop()
        time.sleep(3.5)  # three push intervals fail, retried after 1 s, then 2 s
        n = Node(data_dir=data, args=["--http-listen", "127.0.0.1:%d" % port]).start()
        before = n.total(SAMPLES + sel)
        # the program's thread retries (oldest first) while it still runs
        wait_for(lambda: n.total(SAMPLES + sel) > before, "no retry while running")
        open(stop_file, "w").close()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)
        words = out.split()
        st = {words[i].decode(): float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        assert st["failures"] >= 1 and st["lost"] == 0 and st["dropped"] == 0, (st, err)
        samples = n.total(SAMPLES + sel)
        expect = st["cpu_ns"] / 1e9 * RATE
        assert 0.85 * expect <= samples <= 1.15 * expect + 3, (samples, expect, st)
        stacks = folded(n, CPU_NS + sel)
        alpha, beta = in_function(stacks, "burn_alpha"), in_function(stacks, "burn_beta")
        assert beta > 0 and 1.5 <= alpha / beta <= 2.6, (alpha, beta)
        n.cleanup()
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def test_sampler_counts_a_new_threads_first_cpu():
    """Threads that live 95 ms of CPU each: the CPU each used before the
    sampler's next scan armed its timer (up to 50 ms) is counted in its first
    sample, so the total is still CPU seconds x rate: 0.94 of it, each thread
    losing the half period after its last tick (without the catch-up the node
    got 0.66-0.77 of it)."""
    tmp = tempfile.mkdtemp(prefix="flamedb-sampler-")
    try:
        exe = build_burn(tmp)
        with Node() as n:
            app = unique("short")
            p, st = run_burn(exe, n.url(), app, "short")
            assert p.returncode == 0, p
            assert st["dropped"] == 0 and st["failures"] == 0, st
            sel = '{service_name="%s",env="test",team="perf"}' % app
            samples = n.total(SAMPLES + sel)
            # a thread that ends loses the CPU after its last whole period
            # (each thread here: 9 samples of 9.5 periods)
            expect = st["cpu_ns"] / 1e9 * RATE
            assert 0.85 * expect <= samples <= 1.15 * expect + 3, (samples, expect, st)
            stacks = folded(n, CPU_NS + sel)
            beta = in_function(stacks, "short_thread")
            assert beta >= 0.9 * sum(stacks.values()), stacks
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# A C++ program: its functions' symbols are mangled (_ZN4shop4Cart5totalEd);
# it uses iostream, so libstdc++ (and its __cxa_demangle) is in the process.
CXX_BURN = r"""
#include <ctime>
#include <iostream>
#include <string>
#include "flamedb_sampler.h"

static volatile double sink;

static double thread_cpu()
{
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

namespace shop {
class Cart {
  public:
    __attribute__((noinline)) void total(double secs);
};

void Cart::total(double secs)
{
    double end = thread_cpu() + secs;
    do {
        for (int i = 0; i < 20000; i++) sink = sink * 1.0000001 + i;
    } while (thread_cpu() < end);
}

__attribute__((noinline)) void checkout(Cart &c, double secs)
{
    c.total(secs);
    sink += 1; /* not a tail call: checkout stays on the stack */
}
}

int main(int argc, char **argv)
{
    flamedb_client_t *c;
    flamedb_sampler_t *s;
    char err[256];
    if (flamedb_client_new(argv[1], nullptr, &c, err, sizeof err)) return 2;
    flamedb_sampler_opts_t o = {};
    o.app_name = argv[2];
    o.push_interval_ms = 1000;
    if (flamedb_sampler_start(c, &o, &s, err, sizeof err)) {
        std::cerr << "start: " << std::string(err) << "\n"; /* uses libstdc++ */
        return 3;
    }
    shop::Cart cart;
    shop::checkout(cart, 1.0);
    int rc = flamedb_sampler_stop(s);
    flamedb_client_free(c);
    return rc ? 4 : 0;
}
"""


def test_sampler_demangles_cpp_names():
    """A C++ program's frames show as C++ names (the process has the C++
    runtime, so its __cxa_demangle), not as mangled symbols."""
    tmp = tempfile.mkdtemp(prefix="flamedb-sampler-")
    try:
        exe = harness.build_c_program(tmp, "cxxburn", CXX_BURN, ["-O2", "-rdynamic"], cxx=True)
        with Node() as n:
            app = unique("cxx")
            p = subprocess.run([exe, n.url(), app], capture_output=True, timeout=300)
            assert p.returncode == 0, p
            stacks = folded(n, CPU_NS + '{service_name="%s"}' % app)
            total = sum(stacks.values())
            leaf = in_function(stacks, "shop::Cart::total(double)")
            assert leaf >= 0.8 * total, sorted(stacks.items(), key=lambda kv: -kv[1])[:5]
            assert any(s.endswith(";main;shop::checkout(shop::Cart&, double);shop::Cart::total(double)")
                       for s in stacks), stacks
            assert not any(f.startswith("_Z") for s in stacks for f in s.split(";")), stacks
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_sampler_push_failure_is_not_fatal():
    """With no node listening every push fails: the callback hears of each,
    the program runs to its end and stop returns the last push's error."""
    tmp = tempfile.mkdtemp(prefix="flamedb-sampler-")
    try:
        exe = build_burn(tmp)
        with Node() as n:  # a port that was just free: nothing listens once it is gone
            port = n.port
        p, st = run_burn(exe, "http://127.0.0.1:%d" % port, unique("nowhere"))
        assert p.returncode == 4, p  # FLAMEDB_ERR_UNAVAILABLE from the final push
        assert b"push failed: -8 connect" in p.stderr, p
        assert st["failures"] >= 2 and st["pushes"] == 0 and st["samples"] > 0, st
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests(globals())
