"""Train a small DDPM on MNIST digits with libcolddiff from Python, save it,
load it back and sample a grid of new digits.

    cmake -S . -B build && cmake --build build
    python3 examples/python/train_and_sample.py                 # the 1,000-image slice
    python3 examples/python/train_and_sample.py --mnist data/mnist --epochs 5

Only the standard library is needed; colddiff.py finds build/lib/libcolddiff.so
on its own (or set COLDDIFF_LIBRARY). See docs/python.md.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import colddiff as cd  # noqa: E402

SLICE = os.path.join(HERE, "..", "..", "tests", "data")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist", help="folder with the four MNIST files (default: the "
                    "1,000-image slice in tests/data)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="python-run", help="output folder")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"libcolddiff {cd.version()} from {cd.library_path()}")

    # 1. Data: pixels are p/255 - 0.5; hold 10% out for validation.
    if args.mnist:
        data = cd.Dataset.load_mnist(args.mnist)
    else:
        data = cd.Dataset.load_idx(os.path.join(SLICE, "t10k-images-idx3-ubyte.gz"),
                                   os.path.join(SLICE, "t10k-labels-idx1-ubyte.gz"))
    data.split(0.1, seed=args.seed)
    print(data)

    # 2. A model: the report's CNN, made smaller so that this runs in seconds,
    #    learning to undo Gaussian noise on a linear schedule of T = 200.
    rng = cd.Rng(args.seed)
    decoder = cd.Decoder("cnn", rng, hidden=(16, 16), kernel=5, time_hidden=32)
    noise = cd.Degradation.noise(cd.Schedule.linear(T=200))
    # The trainer borrows both (and keeps them alive); options by name.
    trainer = cd.Trainer(decoder, noise, lr=2e-3, batch=64)
    info = trainer.option_info("lr")
    print(f"{decoder.param_count} parameters; lr {trainer['lr']:g} "
          f"(default {info.default_value:g}), batch {trainer['batch']}")

    # 3. Train. The callback runs after every epoch; returning False would stop.
    def on_epoch(tr, epoch, train_loss, val_loss):
        speed = tr.progress("images_per_sec")
        print(f"epoch {epoch}: train {train_loss:.4f}  val {val_loss:.4f}  "
              f"({speed:.0f} images/s)")

    best = os.path.join(args.out, "best.cdm")
    trainer.fit(data, args.epochs, rng, best_path=best, on_epoch=on_epoch)

    # 4. Keep the inference model: the decoder (its EMA weights if the trainer
    #    kept an EMA) and the degradation with its schedule. best.cdm is a
    #    training checkpoint, to resume from.
    model = os.path.join(args.out, "model.cdm")
    trainer.export(model)
    trainer.close()  # before the decoder and degradation it borrows (the binding sees to it)

    # 5. Load and sample 64 digits with 50 DDIM steps.
    dec, deg = cd.load_model(model)
    sampler = cd.Sampler("ddim", deg, steps=50)
    sampler.set_decoder(dec)
    digits = sampler.sample(cd.Rng(7), (64, 1, 28, 28))
    grid = os.path.join(args.out, "samples.png")
    cd.write_image_grid(grid, digits, columns=8, pixel_map="percentile")
    print(f"wrote {grid} and {model}")


if __name__ == "__main__":
    main()
