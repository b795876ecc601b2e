/* Fuzz target for the configuration loader: any bytes as a YAML file, loaded
 * over the defaults, then validated and expanded like pitot -t and a start
 * do; a failed load must leave the configuration as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cfg c, before;
    char err[512];
    char *buf = malloc(size ? size : 1);

    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    cfg_init(&c);
    cfg_init(&before);
    err[0] = '\0';
    if (cfg_load_buffer(&c, "fuzz.yaml", buf, size, err, sizeof(err)) != 0) {
        /* all or nothing: the defaults are untouched, the message is set */
        if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
            abort();
        if (c.nbackends != before.nbackends || c.listen_port != before.listen_port ||
            c.max_header_bytes != before.max_header_bytes || c.ntiers != before.ntiers)
            abort();
    } else if (cfg_validate(&c, err, sizeof(err)) == 0) {
        if (cfg_backends_expand(&c, err, sizeof(err)) == 0 && c.nbackends > CFG_MAX_BACKENDS)
            abort();
    }
    free(buf);
    cfg_release(&c);
    cfg_release(&before);
    return 0;
}
