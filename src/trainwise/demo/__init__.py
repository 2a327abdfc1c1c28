"""Built-in examples for `trainwise demo`: a healthy and a broken setup on scikit-learn's digits."""
