"""PredNet (Lotter, Kreiman, Cox 2016) in Keras 3, its training, and the next-frame predictor."""
