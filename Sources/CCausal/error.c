#include "cc_error.h"

const char *cc_strerror(int code) {
    switch (code) {
    case CC_OK: return "ok";
    case CC_EINVAL: return "invalid argument";
    case CC_ENOMEM: return "out of memory";
    case CC_EFULL: return "full";
    case CC_EDUPLICATE: return "duplicate message";
    case CC_EWIDTH: return "clock width mismatch";
    case CC_ESENDER: return "sender outside the clock";
    case CC_ELEVEL: return "emergency level out of range";
    case CC_EAHEAD: return "sequence beyond the delivery window";
    case CC_ETRUNCATED: return "frame truncated";
    case CC_ETOOBIG: return "frame larger than the maximum frame size";
    case CC_EVERSION: return "unknown frame version";
    case CC_ETYPE: return "unknown frame type";
    case CC_ELENGTH: return "frame length inconsistent with its contents";
    case CC_EFLAGS: return "reserved frame flags set";
    case CC_ESPARSE: return "sparse clock entry out of range or out of order";
    case CC_ECLOSED: return "closed";
    case CC_EUNSUPPORTED: return "not supported by this CPU";
    case CC_ESYS: return "system call failed";
    default: return "unknown error";
    }
}
