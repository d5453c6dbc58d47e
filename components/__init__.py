"""The KFP components: one module per pipeline step, named after its task (train.py: train-lora and
train-baseline); the steps with a command line also run as `python -m components.<module>`.
"""
