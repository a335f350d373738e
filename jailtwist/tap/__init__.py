"""
One module per twistd plugin: each holds C{Options} and C{makeService}.
"""
