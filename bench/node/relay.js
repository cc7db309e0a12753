// The same relay on Node's socket.io v4 with its defaults: createMessage goes to the
// sender's two-member room and is acked. Run: node bench/node/relay.js PORT
const { createServer } = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const http = createServer();
const io = new Server(http, { cors: { origin: "*" } });

io.on("connection", (socket) => {
  const room = socket.handshake.query.room || socket.id;
  socket.join(room);
  socket.on("createMessage", (data, ack) => {
    io.to(room).emit("message", data);
    if (typeof ack === "function") ack(data);
  });
});

http.listen(port, "127.0.0.1");
