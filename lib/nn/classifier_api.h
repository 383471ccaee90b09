/*
 * classifier_api.h - the classifier's public declarations live in
 * include/colddiff.h (the "Classifier" section); this header remains for
 * the layer's sources.
 */
#ifndef CD_CLASSIFIER_API_H
#define CD_CLASSIFIER_API_H

#include "colddiff.h"

#endif /* CD_CLASSIFIER_API_H */
