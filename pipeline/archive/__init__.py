"""The archive: where a master is delivered, verified, with its provenance manifest.

An archive is an object store of :mod:`pipeline.storage` (an S3 bucket, any S3-compatible
store, or a local directory), with the same key layout in both (see
:mod:`pipeline.archive.archiver`)::

    {prefix}/{script}/{run_id}/{narrative}/{variant}/{draft|final}/master.mp4
                                                                   master.srt
                                                                   contact-sheet.png
                                                                   manifest.json

Modules: ``archiver`` (``archive_run``: what goes where, the manifest last, the report),
``manifest`` (the provenance manifest), ``location`` (the archive's default and messages over
:mod:`pipeline.storage.location`), ``staging`` (public URLs for image inputs) and ``settings``
(S3 settings from the environment, used by storage too until the settings are merged).
``s3client`` only re-exports storage's, for old imports. Nothing here imports boto3 at package
import time.
"""
