// UDP echo server in the style of the Node.js `dgram` documentation: dgram.createSocket with
// 'error', 'message' and 'listening' listeners and server.bind(port), each message sent back to
// its sender with server.send(msg, rinfo.port, rinfo.address). 'udp6' bound to the port alone
// listens on :: (IPv4 too, dual-stack).
//
//     node node_dgram.js PORT
'use strict';
const dgram = require('node:dgram');

const port = Number(process.argv[2]);
const server = dgram.createSocket('udp6');

server.on('error', (err) => {
  console.error(`server error:\n${err.stack}`);
  server.close();
});

server.on('message', (msg, rinfo) => {
  server.send(msg, rinfo.port, rinfo.address);
});

server.on('listening', () => {
  const address = server.address();
  console.log(`server listening ${address.address}:${address.port}`);
});

server.bind(port);
