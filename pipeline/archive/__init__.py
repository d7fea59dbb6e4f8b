"""The archive: where a master is delivered, verified, with its provenance manifest.

An archive is an S3 bucket (any S3-compatible store) or a local directory, with the same key
layout in both (see :mod:`pipeline.archive.archiver`)::

    {prefix}/{script}/{run_id}/{narrative}/{variant}/{draft|final}/master.mp4
                                                                   master.srt
                                                                   contact-sheet.png
                                                                   manifest.json

Modules: ``settings`` (S3 settings from the environment), ``s3client`` (the one boto3 client
factory and the botocore → :mod:`pipeline.errors` translation), ``location`` (parsing
``s3://bucket/prefix`` or a directory), ``archiver`` (``S3Archive``, ``LocalArchive``,
``archive_run``), ``manifest`` (the provenance manifest) and ``staging`` (public URLs for image
inputs). Nothing here imports boto3 at package import time.
"""
