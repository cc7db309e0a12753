"""Everything Socket.IO and Tornado: the namespace and the life of each socket, the
room adapter handlers broadcast through, the Tornado application and its request
handlers, and (in compat) every use of a library's private API."""
