# TCP echo server in the style of Ruby's TCPServer documentation: TCPServer.new, then
# Thread.start(server.accept) per client.
#
#     ruby ruby_thread.rb PORT
require 'socket'

port = Integer(ARGV.fetch(0))
server = TCPServer.new('127.0.0.1', port)

loop do
  Thread.start(server.accept) do |client|
    begin
      loop { client.write(client.readpartial(65536)) }
    rescue EOFError, Errno::ECONNRESET, Errno::EPIPE
      # the client is done (EOF) or gone (reset)
    ensure
      client.close
    end
  end
end
