/* Logging: one line per event to stderr. Never log a token, password or Authorization header. */
#ifndef OCIREG_SERVER_LOG_H
#define OCIREG_SERVER_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *s);

void log_emit(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level is checked before the arguments are evaluated. */
#define log_msg(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) <= log_threshold)                                                              \
            log_emit((level), __VA_ARGS__);                                                        \
    } while (0)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
