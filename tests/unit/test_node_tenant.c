/* test_node_tenant.c — X-Scope-OrgID validation (docs/api.md, Conventions). */
#include "check.h"
#include "node/node_int.h"

static void test_tenants(void)
{
    errmsg_t em = {{0}};
    CHECK_EQ_STR(routes_tenant(NULL, &em), "anonymous");
    CHECK_EQ_STR(routes_tenant("", &em), "anonymous");
    CHECK_EQ_STR(routes_tenant("team-a_1.(x)*'!", &em), "team-a_1.(x)*'!");
    CHECK(routes_tenant(".", &em) == NULL);
    CHECK(routes_tenant("..", &em) == NULL);
    CHECK(routes_tenant("a/b", &em) == NULL);
    CHECK(strstr(em.text, "character 2") != NULL);
    CHECK(routes_tenant("a b", &em) == NULL);
    char longest[152];
    memset(longest, 'x', 151);
    longest[151] = 0;
    CHECK(routes_tenant(longest, &em) == NULL);
    longest[150] = 0;
    CHECK(routes_tenant(longest, &em) != NULL);
}

int main(void)
{
    test_tenants();
    return check_exit();
}
