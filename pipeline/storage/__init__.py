"""Object storage: an S3 bucket or a local directory behind one interface.

Used by the archive (:mod:`pipeline.archive`), the shared clip store
(:mod:`pipeline.render.shared`) and the script source (:mod:`pipeline.script.source`); it knows
nothing of runs, masters or scripts. Modules: ``base`` (the :class:`~pipeline.storage.base.ObjectStore`
interface), ``location`` (``s3://bucket/prefix`` or a directory, and the key layout),
``factory`` (``open_store``, the one place that picks an implementation), ``s3`` and ``local``
(the implementations), ``s3client`` (the one boto3 client factory), ``errors`` (the one mapping of
botocore's errors to :mod:`pipeline.errors`) and ``files`` (atomic local writes, OS errors
translated). Nothing here imports boto3 at package import time.
"""
