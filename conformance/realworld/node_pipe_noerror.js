// The Node.js `net` documentation's echo idiom exactly: net.createServer((socket) =>
// socket.pipe(socket)), with no 'error' listener on the socket.
//
//     node node_pipe_noerror.js PORT
'use strict';
const net = require('node:net');

const server = net.createServer((socket) => socket.pipe(socket));

server.on('error', (err) => {
  throw err;
});

server.listen(Number(process.argv[2]));
