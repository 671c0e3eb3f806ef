/* Error codes shared by every part of the causal core.
 *
 * Functions return 0 (CC_OK) or a positive count on success and one of these
 * negative codes on failure; each malformed input has its own code so that a
 * caller can log exactly why it closed a connection. */
#ifndef CC_ERROR_H
#define CC_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CC_OK = 0,
    CC_EINVAL = -1,       /* an argument breaks the function's contract */
    CC_ENOMEM = -2,       /* allocation failed (only at init, never per message) */
    CC_EFULL = -3,        /* a bounded structure (queue, pool, pending set) is full */
    CC_EDUPLICATE = -4,   /* the message was already delivered or is already pending */
    CC_EWIDTH = -5,       /* clock width does not match the group's width */
    CC_ESENDER = -6,      /* sender slot outside the clock */
    CC_ELEVEL = -7,       /* emergency level outside LOW..CRITICAL */
    CC_EAHEAD = -8,       /* sequence too far ahead of what was delivered (outside the window) */
    CC_ETRUNCATED = -9,   /* frame: the buffer ends before the frame does */
    CC_ETOOBIG = -10,     /* frame: the declared length exceeds the maximum frame size */
    CC_EVERSION = -11,    /* frame: unknown version */
    CC_ETYPE = -12,       /* frame: unknown frame type */
    CC_ELENGTH = -13,     /* frame: declared length inconsistent with header and clock */
    CC_EFLAGS = -14,      /* frame: reserved flag bits set */
    CC_ESPARSE = -15,     /* frame: sparse clock entry out of range or not ascending */
    CC_ECLOSED = -16,     /* the loop or inbox is closed */
    CC_EUNSUPPORTED = -17,/* the CPU lacks the requested code path */
    CC_ESYS = -18,        /* an operating system or libuv call failed */
};

/** A static, human-readable description of an error code. Never NULL. */
const char *cc_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
