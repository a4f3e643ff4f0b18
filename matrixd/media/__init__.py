"""The media repository: files behind ``mxc://`` URIs, their storage and thumbnails.

* ``ids``: media ids and the sanitising of ``mxc://`` parts (no path traversal).
* ``storage``: where files live (``MediaStorage`` interface, filesystem backend).
* ``headers``: the response headers that make serving user content safe.
* ``sizing``: thumbnail geometry and the choice of a thumbnail for a request (pure).
* ``thumbnailer``: the Pillow work (blocking; run on a thread pool).
* ``remote``: the interface federation implements to fetch other servers' media.
* ``repository``: uploads, async uploads, looking media up for download.
* ``thumbnails``: choosing, generating and caching thumbnails.
* ``blocking``: running file and image work on the reactor's thread pool.
* ``area``: wiring all of the above for a process role.
"""
