#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/http.h"

/*
 * Sessions in use and idle open handles, counted apart: a session in use is held by a request
 * (so their number is bounded by the connections, max_busy), an idle handle is kept so a
 * chunked upload is not rehashed at every PATCH (IDLE_SLOTS at most, the least recently used
 * closed first). Bodies in flight never take the room of idle handles nor the other way round.
 */
#define IDLE_SLOTS 256

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
    unsigned max_busy;
    unsigned nbusy, nidle;
    size_t nslots; /* max_busy + IDLE_SLOTS: a free slot exists while nbusy < max_busy */
    struct slot *slots;
};

enum store_err upload_cache_new(struct upload_cache **out, unsigned max_busy)
{
    struct upload_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return STORE_ENOMEM;
    c->max_busy = max_busy > 0 ? max_busy : 1;
    c->nslots = (size_t)c->max_busy + IDLE_SLOTS;
    c->slots = calloc(c->nslots, sizeof(*c->slots));
    if (c->slots == NULL) {
        free(c);
        return STORE_ENOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return STORE_OK;
}

void upload_cache_free(struct upload_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nslots; i++)
        upload_close(c->slots[i].u);
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c);
}

static struct slot *find(struct upload_cache *c, const char *id)
{
    for (size_t i = 0; i < c->nslots; i++)
        if (c->slots[i].used && strcmp(c->slots[i].id, id) == 0)
            return &c->slots[i];
    return NULL;
}

static struct slot *unused_slot(struct upload_cache *c)
{
    for (size_t i = 0; i < c->nslots; i++)
        if (!c->slots[i].used)
            return &c->slots[i];
    return NULL;
}

/* Empties a slot, keeping the counts; returns the handle it held for the caller to close. */
static struct upload *clear(struct upload_cache *c, struct slot *s)
{
    struct upload *u = s->u;
    if (s->busy)
        c->nbusy--;
    else
        c->nidle--;
    memset(s, 0, sizeof(*s));
    return u;
}

/* With more idle handles than IDLE_SLOTS: takes out the least recently used one. */
static struct upload *evict_idle(struct upload_cache *c)
{
    if (c->nidle <= IDLE_SLOTS)
        return NULL;
    struct slot *lru = NULL;
    for (size_t i = 0; i < c->nslots; i++) {
        struct slot *s = &c->slots[i];
        if (s->used && !s->busy && (lru == NULL || s->last < lru->last))
            lru = s;
    }
    return lru != NULL ? clear(c, lru) : NULL;
}

enum store_err upload_cache_acquire(struct upload_cache *c, struct blobstore *bs, const char *id,
                                    enum digest_alg alg, bool create, struct upload **out,
                                    bool *in_use)
{
    struct upload *u = NULL;
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, id);
    if (s != NULL && s->busy) {
        pthread_mutex_unlock(&c->mu);
        if (in_use != NULL)
            *in_use = true;
        return STORE_EBUSY;
    }
    if (c->nbusy >= c->max_busy) {
        s = NULL;
    } else if (s != NULL) {
        u = s->u;
        s->u = NULL;
        s->busy = true;
        c->nidle--;
        c->nbusy++;
    } else {
        /* opened from disk below: its acked offset is not known until release */
        s = unused_slot(c);
        s->used = true;
        s->busy = true;
        memcpy(s->id, id, UPLOAD_ID_LEN + 1);
        c->nbusy++;
    }
    pthread_mutex_unlock(&c->mu);
    if (s == NULL) {
        if (in_use != NULL)
            *in_use = false;
        return STORE_EBUSY;
    }
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
        (void)clear(c, s);
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
    struct upload *evicted = NULL;
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, upload_id(u));
    if (s != NULL && s->busy) {
        s->acked = upload_offset(u);
        s->u = u;
        s->busy = false;
        s->last = time(NULL);
        c->nbusy--;
        c->nidle++;
        u = NULL;
        evicted = evict_idle(c);
    }
    pthread_mutex_unlock(&c->mu);
    upload_close(u);
    upload_close(evicted);
}

struct upload *upload_cache_detach(struct upload_cache *c, struct upload *u)
{
    if (u == NULL)
        return NULL;
    struct upload *other = NULL; /* none: the slot is busy, u is its handle */
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, upload_id(u));
    if (s != NULL)
        other = clear(c, s);
    pthread_mutex_unlock(&c->mu);
    if (other != u)
        upload_close(other);
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
