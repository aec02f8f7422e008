"""The codecs: classical baselines (classical.py) and one subpackage per neural codec."""
