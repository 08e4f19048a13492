"""Tools: label transfer, cross-species analyses and scICE clustering consistency."""
