/*
 * metrics_api.h - the metrics layer's public declarations now live in
 * include/colddiff.h (the "Image metrics", "Frechet distance" and
 * "Classifier-based summaries" sections);
 * this header remains for the layer's sources.
 */
#ifndef CD_METRICS_API_H
#define CD_METRICS_API_H

#include "colddiff.h"

#endif /* CD_METRICS_API_H */
