/* Reserve NeuronCores with nrt_init, report the status, hold them until stdin closes, then nrt_close.
 * Prints "init=<status>" at once (flushed) and "closed" at the end. */
#include <stdio.h>
#include <unistd.h>

#include <nrt/nrt.h>

int main(void)
{
    NRT_STATUS status = nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "");
    uint32_t visible = 0;
    if (status == NRT_SUCCESS) nrt_get_visible_nc_count(&visible);
    printf("init=%d visible=%u\n", (int)status, visible);
    fflush(stdout);
    if (status != NRT_SUCCESS) return 1;
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    nrt_close();
    printf("closed\n");
    return 0;
}
