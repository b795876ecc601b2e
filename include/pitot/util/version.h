/* version: pitot's version, for --version and what pitot tells others about
 * itself (the OTLP resource and scope). */
#ifndef PITOT_UTIL_VERSION_H
#define PITOT_UTIL_VERSION_H

#define PITOT_VERSION "0.1.0"

#endif
