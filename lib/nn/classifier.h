/*
 * classifier.h - internals of the classifier (classifier.c), for the
 * tests: a configurable architecture (the public API builds only the MNIST
 * one, but a tiny one makes gradient checks cheap) and the raw forward and
 * backward passes. Nothing here is exported.
 */
#ifndef CD_NN_CLASSIFIER_H
#define CD_NN_CLASSIFIER_H

#include "core.h"
#include "nn/nn.h"

/*
 * conv1: k3 s1 p1, 1 -> ch[0]; conv2: k4 s2 p1, ch[0] -> ch[1];
 * conv3: k4 s2 p1, ch[1] -> ch[2]; fc1: ch[2] H3 W3 -> hidden; fc2: hidden
 * -> classes. Each layer but fc2 is followed by a GELU.
 */
typedef struct cd__classifier_cfg {
    int64_t height, width; /* 4..512 */
    int64_t channels[3];   /* 1..1024 each */
    int64_t hidden;        /* 1..4096: the feature width F */
    int64_t classes;       /* 2..1024 */
} cd__classifier_cfg;

/* The shipped MNIST configuration (28 x 28, 32/64/32, 64, 10). */
void cd__classifier_cfg_mnist(cd__classifier_cfg *cfg);

/* Check every field; CD_ERR_RANGE naming the field (fn prefixes it). */
cd_status cd__classifier_cfg_check(const cd__classifier_cfg *cfg, const char *fn);

/* cd_classifier_create() for any valid configuration. */
cd_status cd__classifier_create_cfg(cd_classifier **out, const cd__classifier_cfg *cfg,
                                    cd_rng *rng);

/* A classifier of cfg whose parameters are described but not laid out
 * (nothing of their size allocated): for a load, which lays them out only
 * once the file is known to hold them (cd__ckpt_apply). */
cd_status cd__classifier_describe(cd_classifier **out, const cd__classifier_cfg *cfg);

/*
 * Forward n images (n x 1 x H x W floats, copied in) through the network,
 * planning buffers for n first. Afterwards cd__classifier_logits() holds
 * the n x K logits and cd__classifier_features() the n x F features, until
 * the next forward. Errors: CD_ERR_OUT_OF_MEMORY only.
 */
cd_status cd__classifier_forward(cd_classifier *c, const float *x, int64_t n);
const float *cd__classifier_logits(const cd_classifier *c);
const float *cd__classifier_features(const cd_classifier *c);

/*
 * After a forward: given dlogits (n x K), ADD the parameter gradients into
 * the params' grad block and, if dx is not NULL, dL/dx into dx (n x H x W).
 */
void cd__classifier_backward(cd_classifier *c, float *dx, const float *dlogits);

/* The training options (classifier_options.c), held by each classifier. */
typedef struct {
    int64_t batch, max_shift;
    double lr;
} cd__classifier_opts;

/* The defaults: the shipped classifier's recipe. */
void cd__classifier_opts_default(cd__classifier_opts *o);

/* A classifier's options (c not NULL). */
cd__classifier_opts *cd__classifier_opts_of(cd_classifier *c);

/* For classifier_io.c: the configuration, and the counters a load restores. */
const cd__classifier_cfg *cd__classifier_cfg_of(const cd_classifier *c);
void cd__classifier_set_counters(cd_classifier *c, int64_t steps, int64_t epochs);

#endif /* CD_NN_CLASSIFIER_H */
