"""Numerical execution of NEFF graphs with numpy, and the cost model that gives each run a simulated duration."""
