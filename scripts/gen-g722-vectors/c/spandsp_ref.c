/*
 * spandsp_ref: G.722 reference vectors from libspandsp, for natkit's
 * pkg/media/g722 tests. Not part of natkit's build (it links -lspandsp);
 * gen.sh compiles and runs it.
 *
 *   spandsp_ref encode IN.s16le OUT.g722    16 kHz PCM -> G.722 codes
 *   spandsp_ref decode IN.g722 OUT.s16le    G.722 codes -> 16 kHz PCM
 *
 * Both directions use 64000 bit/s and options 0: 16 kHz linear audio (not
 * G722_SAMPLE_RATE_8000) and one code per octet (not G722_PACKED, which
 * only applies at 56 and 48 kbit/s anyway). Samples are 16-bit little
 * endian. One codec state runs over the whole file, fed in 20 ms blocks
 * (320 samples, 160 octets), so the output is that of one stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>

static int die(const char *msg)
{
    fprintf(stderr, "spandsp_ref: %s\n", msg);
    return 2;
}

int main(int argc, char **argv)
{
    FILE *in, *out;

    if (argc != 4 || (strcmp(argv[1], "encode") != 0 && strcmp(argv[1], "decode") != 0))
        return die("usage: spandsp_ref encode|decode IN OUT");
    if ((in = fopen(argv[2], "rb")) == NULL)
        return die("cannot open input");
    if ((out = fopen(argv[3], "wb")) == NULL)
        return die("cannot open output");

    if (strcmp(argv[1], "encode") == 0) {
        g722_encode_state_t *s = g722_encode_init(NULL, 64000, 0);
        int16_t pcm[320];
        uint8_t code[160];
        size_t n;
        if (s == NULL)
            return die("g722_encode_init failed");
        /* spandsp consumes samples in pairs: an odd count would read past
           the buffer, so inputs must have an even number of samples. */
        while ((n = fread(pcm, sizeof(int16_t), 320, in)) > 0) {
            if (n % 2 != 0)
                return die("input has an odd number of samples");
            int m = g722_encode(s, code, pcm, (int) n);
            if (fwrite(code, 1, (size_t) m, out) != (size_t) m)
                return die("write failed");
        }
        g722_encode_free(s);
    } else {
        g722_decode_state_t *s = g722_decode_init(NULL, 64000, 0);
        uint8_t code[160];
        int16_t pcm[320];
        size_t n;
        if (s == NULL)
            return die("g722_decode_init failed");
        while ((n = fread(code, 1, 160, in)) > 0) {
            int m = g722_decode(s, pcm, code, (int) n);
            if (fwrite(pcm, sizeof(int16_t), (size_t) m, out) != (size_t) m)
                return die("write failed");
        }
        g722_decode_free(s);
    }
    if (fclose(out) != 0)
        return die("close failed");
    fclose(in);
    return 0;
}
