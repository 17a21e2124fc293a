"""Offline evaluation: recorded generations, exact policy replay, grading, reports and calibration.

Library code with typed inputs (no argparse, no CLI imports): ``stopgate bench tradeoff`` and
``stopgate calibrate`` drive it, and so can the gateway itself (autopilot).
"""
