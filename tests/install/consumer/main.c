/* A program outside the project, built against the installed tree. */
#include <colddiff.h>
#include <colddiff_experimental.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (cd_abi_version() != CD_ABI_VERSION) {
        fprintf(stderr, "ABI %d, header %d\n", (int)cd_abi_version(), CD_ABI_VERSION);
        return 1;
    }
    cd_rng *rng = NULL;
    cd_tensor *t = NULL;
    int64_t shape[2] = {4, 8};
    if (cd_rng_create(&rng, 42) != CD_OK || cd_tensor_create(&t, 2, shape) != CD_OK ||
        cd_rng_normal_tensor(rng, t) != CD_OK) {
        fprintf(stderr, "consumer: %s\n", cd_last_error());
        return 1;
    }
    float sum = 0.0f;
    for (int i = 0; i < 32; i++) sum += cd_tensor_data(t)[i];
    printf("consumer: libcolddiff %s, sum of 32 normals %.4f\n", cd_version_string(), sum);
    cd_tensor_free(t);
    cd_rng_free(rng);
    /* The experimental header is installed too, and its keys are described
     * like the stable ones. */
    cd_option_info info;
    if (cd_trainer_option_info(CD_TRAINER_OPT_LR_DECAY, &info) != CD_OK ||
        info.type != CD_OPTION_INT) {
        fprintf(stderr, "consumer: CD_TRAINER_OPT_LR_DECAY: %s\n", cd_last_error());
        return 1;
    }
    /* A misuse must come back as an error, not a crash. */
    return cd_tensor_create(NULL, 0, NULL) == CD_ERR_INVALID_ARGUMENT && strlen(cd_last_error()) > 0
               ? 0
               : 1;
}
