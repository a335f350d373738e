"""
One-shot commands (console scripts): parse options, call the layers below.
"""
