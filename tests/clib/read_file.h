/* Shared by the test programs: the whole content of a file (a NEFF, an input) in a malloc'd buffer. */
#ifndef NEURON_SIM_TEST_READ_FILE_H
#define NEURON_SIM_TEST_READ_FILE_H

#include <stdio.h>
#include <stdlib.h>

/* The bytes of ``path`` and their count in ``*size``; NULL if it cannot be read whole. */
static void *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = n >= 0 ? malloc(n ? n : 1) : NULL;
    if (!buf || fread(buf, 1, n, f) != (size_t)n) { free(buf); fclose(f); return NULL; }
    fclose(f);
    *size = n;
    return buf;
}

#endif
