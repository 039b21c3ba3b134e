"""Sweeps: grids of static points × stacked members, memory-aware chunks sharded over devices, tables and plots."""
