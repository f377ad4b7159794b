"""The core client that drivers and workers share: context, submit/get/put, refs and refcounts, remote functions, actor handles, task progress bars."""
