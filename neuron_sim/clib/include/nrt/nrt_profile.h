/* neuron_sim declares the whole libnrt API in nrt.h. */
#include "nrt.h"
