/* demo_fleet.c — the fake fleet the demo profiles (demo_gen.h): data only.
 *
 * Stacks imitate Go services. In v2, checkout's pricing.applyDiscounts
 * compiles its rules' regular expressions on every call (the v2-only stack)
 * and matches more of them: the regression the demo lets you find by
 * comparing version="v1" with version="v2". Each api CPU profile carries four
 * traced requests; the slow one waits mostly on GetProduct's database query
 * (stack 0).
 */
#include "client/demo_gen.h"

#define HTTP "runtime.goexit;net/http.(*conn).serve;net/http.serverHandler.ServeHTTP;"
#define API HTTP "github.com/acme/api/router.(*Mux).ServeHTTP;"
#define CHK HTTP "github.com/acme/checkout/handler.Checkout;"
#define WRK "runtime.goexit;github.com/acme/worker/queue.(*Consumer).Run;"
#define GC "runtime.goexit;runtime.gcBgMarkWorker;runtime.gcDrain;"
#define SCHED "runtime.mcall;runtime.park_m;runtime.schedule;runtime.findRunnable;"

static const demo_stack_t api_stacks[] = {
    {API "github.com/acme/api/handler.GetProduct;github.com/acme/api/store.(*DB).Product;"
         "database/sql.(*DB).QueryRowContext;github.com/lib/pq.(*conn).query;net.(*conn).Read;"
         "syscall.Read",
     120, 0, 0, 0},
    {API "github.com/acme/api/handler.GetProduct;encoding/json.Marshal;"
         "encoding/json.(*encodeState).marshal;encoding/json.(*encodeState).reflectValue;"
         "encoding/json.structEncoder.encode",
     90, 2048, 0, 0},
    {API "github.com/acme/api/handler.ListProducts;github.com/acme/api/store.(*Cache).Get;"
         "sync.(*RWMutex).RLock",
     30, 0, 0, 0},
    {API "github.com/acme/api/handler.ListProducts;sort.Slice;sort.pdqsort_func", 45, 0, 0, 0},
    {API "github.com/acme/api/handler.ListProducts;encoding/json.Marshal;"
         "encoding/json.(*encodeState).marshal;encoding/json.(*encodeState).reflectValue;"
         "encoding/json.sliceEncoder.encode",
     70, 16384, 0, 0},
    {API "github.com/acme/api/middleware.Gzip;compress/gzip.(*Writer).Write;"
         "compress/flate.(*compressor).deflate;compress/flate.(*compressor).findMatch",
     55, 0, 0, 0},
    {API "github.com/acme/api/middleware.Auth;github.com/golang-jwt/jwt.Parse;"
         "crypto/rsa.VerifyPKCS1v15;math/big.nat.expNN",
     40, 512, 0, 0},
    {HTTP
     "net/http.(*conn).readRequest;net/http.readRequest;net/textproto.(*Reader).ReadMIMEHeader",
     25, 1024, 0, 0},
    {GC "runtime.markroot;runtime.scanstack", 20, 0, 0, 0},
    {GC "runtime.scanobject;runtime.findObject", 45, 0, 0, 0},
    {SCHED "runtime.netpoll;runtime.epollwait", 15, 0, 0, 0},
};

static const demo_stack_t checkout_stacks[] = {
    {CHK
     "github.com/acme/checkout/cart.(*Cart).Total;github.com/acme/checkout/pricing.applyDiscounts;"
     "regexp.(*Regexp).MatchString;regexp.(*Regexp).doExecute;regexp.(*machine).match",
     40, 0, 3, 0},
    {CHK
     "github.com/acme/checkout/cart.(*Cart).Total;github.com/acme/checkout/pricing.applyDiscounts;"
     "regexp.MustCompile;regexp.compile;regexp/syntax.Parse",
     50, 4096, 0, 1},
    {CHK "github.com/acme/checkout/cart.(*Cart).Total;github.com/acme/checkout/pricing.taxFor;"
         "math/big.(*Float).Mul",
     20, 128, 0, 0},
    {CHK "github.com/acme/checkout/payment.(*Client).Charge;net/http.(*Client).Do;"
         "net/http.(*Transport).roundTrip;crypto/tls.(*Conn).Write;crypto/aes.gcmAesEnc",
     60, 8192, 0, 0},
    {CHK "github.com/acme/checkout/store.(*Orders).Insert;database/sql.(*Tx).ExecContext;"
         "github.com/lib/pq.(*conn).Exec;net.(*conn).Write;syscall.Write",
     55, 0, 0, 0},
    {CHK "encoding/json.(*Decoder).Decode;encoding/json.(*decodeState).object;"
         "encoding/json.(*decodeState).literalStore",
     35, 1024, 0, 0},
    {GC "runtime.scanobject;runtime.findObject", 30, 0, 0, 0},
    {SCHED "runtime.netpoll;runtime.epollwait", 10, 0, 0, 0},
};

static const demo_stack_t worker_stacks[] = {
    {WRK "github.com/acme/worker/jobs.ResizeImage;image/jpeg.Decode;"
         "image/jpeg.(*decoder).processSOS;image/jpeg.(*decoder).reconstructBlock;image/jpeg.idct",
     200, 262144, 0, 0},
    {WRK "github.com/acme/worker/jobs.ResizeImage;golang.org/x/image/draw.BiLinear.Scale;"
         "golang.org/x/image/draw.ablInterpolator.scale_RGBA_YCbCr444_Src",
     150, 0, 0, 0},
    {WRK "github.com/acme/worker/jobs.ResizeImage;image/jpeg.Encode;"
         "image/jpeg.(*encoder).writeSOS;image/jpeg.fdct",
     120, 65536, 0, 0},
    {WRK "github.com/acme/worker/queue.(*Consumer).fetch;"
         "github.com/segmentio/kafka-go.(*Reader).ReadMessage;net.(*conn).Read;syscall.Read",
     40, 32768, 0, 0},
    {WRK "github.com/acme/worker/jobs.SendEmail;net/smtp.(*Client).Data;crypto/tls.(*Conn).Write",
     20, 4096, 0, 0},
    {GC "runtime.scanobject;runtime.findObject", 80, 0, 0, 0},
    {GC "runtime.markroot;runtime.scanstack", 15, 0, 0, 0},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const demo_service_t api = {"api", 1.5, api_stacks, N(api_stacks), 4, 0};
static const demo_service_t checkout = {"checkout", 0.8, checkout_stacks, N(checkout_stacks)};
static const demo_service_t worker = {"worker", 2.5, worker_stacks, N(worker_stacks)};

static const demo_instance_t fleet[] = {
    {&api, "api-6c9f7-x2k4p", "eu-west-1"},
    {&api, "api-6c9f7-m8q1z", "eu-west-1"},
    {&api, "api-6c9f7-d4r7t", "us-east-1"},
    {&checkout, "checkout-5b8d2-h6n3v", "eu-west-1"},
    {&checkout, "checkout-5b8d2-p9c2w", "us-east-1"},
    {&worker, "worker-7f4c1-k3j8s", "eu-west-1"},
    {&worker, "worker-7f4c1-t5b6y", "us-east-1"},
};

const demo_instance_t *demo_fleet(size_t *n)
{
    *n = N(fleet);
    return fleet;
}
