/* neuron_sim declares the whole libnrt API, the explicit async API included, in nrt.h. */
#include "nrt.h"
