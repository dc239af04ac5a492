"""Offline companion of amplify_ros: preprocessing, training, evaluation and benchmark commands."""
