#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/http.h"

/* Idle open sessions kept so a chunked upload is not rehashed at every PATCH. */
#define CACHE_SLOTS 256

struct slot {
    bool used;
    bool busy;
    char id[UPLOAD_ID_LEN + 1];
    struct upload *u; /* NULL while busy */
    uint64_t acked;   /* offset when last released */
    time_t last;
};

struct upload_cache {
    pthread_mutex_t mu;
    struct slot slots[CACHE_SLOTS];
};

enum store_err upload_cache_new(struct upload_cache **out)
{
    struct upload_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return STORE_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return STORE_OK;
}

void upload_cache_free(struct upload_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        upload_close(c->slots[i].u);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static struct slot *find(struct upload_cache *c, const char *id)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (c->slots[i].used && strcmp(c->slots[i].id, id) == 0)
            return &c->slots[i];
    return NULL;
}

/* A free slot, evicting the least recently used idle one when full; NULL if all busy. */
static struct slot *free_slot(struct upload_cache *c, struct upload **evicted)
{
    struct slot *lru = NULL;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        struct slot *s = &c->slots[i];
        if (!s->used)
            return s;
        if (!s->busy && (lru == NULL || s->last < lru->last))
            lru = s;
    }
    if (lru != NULL) {
        *evicted = lru->u;
        memset(lru, 0, sizeof(*lru));
    }
    return lru;
}

enum store_err upload_cache_acquire(struct upload_cache *c, struct blobstore *bs, const char *id,
                                    enum digest_alg alg, bool create, struct upload **out)
{
    struct upload *u = NULL, *evicted = NULL;
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, id);
    if (s != NULL && s->busy) {
        pthread_mutex_unlock(&c->mu);
        return STORE_EBUSY;
    }
    if (s != NULL) {
        u = s->u;
        s->u = NULL;
        s->busy = true;
    } else {
        /* opened from disk below: its acked offset is not known until release */
        s = free_slot(c, &evicted);
        if (s != NULL) {
            s->used = true;
            s->busy = true;
            memcpy(s->id, id, UPLOAD_ID_LEN + 1);
        }
    }
    pthread_mutex_unlock(&c->mu);
    upload_close(evicted);
    if (s == NULL)
        return STORE_EBUSY;
    /* another process (a second server on this root) may have written to it */
    if (u != NULL && upload_stale(u)) {
        upload_close(u);
        u = NULL;
    }
    enum store_err rc = STORE_OK;
    if (u == NULL)
        rc = upload_open(bs, id, alg, create, &u);
    if (rc != STORE_OK) {
        pthread_mutex_lock(&c->mu);
        memset(s, 0, sizeof(*s));
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    *out = u;
    return STORE_OK;
}

void upload_cache_release(struct upload_cache *c, struct upload *u, bool keep)
{
    if (u == NULL)
        return;
    if (!keep) {
        upload_close(upload_cache_detach(c, u));
        return;
    }
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, upload_id(u));
    if (s != NULL) {
        s->acked = upload_offset(u);
        s->u = u;
        s->busy = false;
        s->last = time(NULL);
        u = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    upload_close(u);
}

struct upload *upload_cache_detach(struct upload_cache *c, struct upload *u)
{
    if (u == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, upload_id(u));
    if (s != NULL)
        memset(s, 0, sizeof(*s));
    pthread_mutex_unlock(&c->mu);
    return u;
}

uint64_t upload_cache_acked(struct upload_cache *c, const char *id)
{
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, id);
    uint64_t acked = s != NULL ? s->acked : 0;
    pthread_mutex_unlock(&c->mu);
    return acked;
}
