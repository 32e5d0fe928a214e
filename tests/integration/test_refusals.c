/*
 * Bodies refused before they are read (a manifest over the size limit, an upload over the
 * quota), against the real binary: a client that sends the whole body anyway, as most HTTP
 * clients do, must then read the refusal. Closed with the body still coming, the server's
 * socket would answer the rest with a reset, the client's next send would fail, and it
 * would never see why.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define BODY (64u << 20) /* far more than the socket buffers of both sides hold */

static struct srv S;

/*
 * Sends head, then `len` bytes of body, all of it (a send that fails fails the test), then
 * reads the answer to its end. The status of the answer into *status, its text into out.
 */
static void send_whole_then_read(const char *head, size_t len, long *status, char *out,
                                 size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd != -1 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head));
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof(chunk));
    size_t sent = 0;
    while (sent < len) {
        size_t n = len - sent < sizeof(chunk) ? len - sent : sizeof(chunk);
        ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
        if (w <= 0) {
            fprintf(stderr, "send failed after %zu of %zu body bytes: %s\n", sent, len,
                    strerror(errno));
            CHECK(w > 0);
        }
        sent += (size_t)w;
    }
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, out + have, cap - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        CHECK(have < cap - 1);
    }
    out[have] = '\0';
    close(fd);
    *status = 0;
    CHECK(sscanf(out, "HTTP/1.1 %ld", status) == 1);
}

static void test_manifest_too_big(void)
{
    char head[512], answer[8192];
    long status;
    snprintf(head, sizeof(head),
             "PUT /v2/refused/app/manifests/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
             "Content-Length: %u\r\n\r\n",
             BODY);
    send_whole_then_read(head, BODY, &status, answer, sizeof(answer));
    CHECK_INT(status, ==, 413);
    CHECK(strstr(answer, "\"SIZE_INVALID\"") != NULL);
}

static void test_upload_over_quota(void)
{
    char out[128];
    CHECK_INT(run_cli(&S, NULL, out, sizeof(out),
                      (const char *[]){"repo", "set", "refused/q", "--quota", "1M", NULL}),
              ==, 0);
    struct resp *r = http(&S, "POST", "/v2/refused/q/blobs/uploads/", NULL, NULL, 0);
    EXPECT(r, 202, NULL);
    char loc[256], head[768], answer[8192];
    CHECK(resp_hdr(r, "Location", loc, sizeof(loc)) != NULL);
    resp_free(r);
    snprintf(head, sizeof(head),
             "PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
             "Content-Length: %u\r\n\r\n",
             loc, BODY);
    long status;
    send_whole_then_read(head, BODY, &status, answer, sizeof(answer));
    CHECK_INT(status, ==, 403);
    CHECK(strstr(answer, "quota of 1048576 bytes") != NULL);
}

/* The server still serves, and no descriptor was left behind by the lingering ones. */
static void test_still_serving(void)
{
    for (int i = 0; i < 3; i++) {
        test_manifest_too_big();
        struct resp *r = http(&S, "GET", "/v2/", NULL, NULL, 0);
        EXPECT(r, 200, NULL);
        resp_free(r);
    }
}

int main(void)
{
    srv_start(&S, NULL);
    RUN(test_manifest_too_big);
    RUN(test_upload_over_quota);
    RUN(test_still_serving);
    srv_stop(&S);
    srv_cleanup(&S);
    return 0;
}
