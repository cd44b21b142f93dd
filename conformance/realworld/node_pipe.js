// TCP echo server in the style of the Node.js `net` documentation: net.createServer with a
// connection listener that pipes the socket into itself.
//
//     node node_pipe.js PORT
'use strict';
const net = require('node:net');

const port = Number(process.argv[2]);

const server = net.createServer((socket) => {
  socket.on('error', () => {});   // a client reset ends this connection only
  socket.pipe(socket);
});

server.on('error', (err) => {
  throw err;
});

server.listen(port);
