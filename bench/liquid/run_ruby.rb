# bench/liquid/run_ruby.rb - Shopify's Ruby Liquid on the benchmark template.
#
#   ruby [--yjit] run_ruby.rb TEMPLATE DATA.json N OUT [--liquid-c]
#
# Parses TEMPLATE once (strict mode), renders it N times with DATA, writes the
# last output to OUT and prints "renders_per_second=R cpu_renders_per_second=C ..."
# (wall clock and process CPU time) and which engine ran.
require 'json'
require 'liquid'

template_path, data_path, n, out_path, flag = ARGV
n = Integer(n)
if flag == '--liquid-c'
  require 'liquid/c'
  abort 'liquid-c did not load' unless defined?(Liquid::C) && Liquid::C.enabled
end

src = File.read(template_path)
data = JSON.parse(File.read(data_path))
tpl = Liquid::Template.parse(src, error_mode: :strict)
out = tpl.render!(data) # warm-up (and the output that is compared)
cpu0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
n.times { out = tpl.render!(data) }
dt = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu0
File.write(out_path, out)
yjit = defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled? ? 'yes' : 'no'
puts format('renders_per_second=%.1f seconds=%.3f cpu_renders_per_second=%.1f cpu_seconds=%.3f ' \
            'liquid=%s liquid_c=%s yjit=%s ruby=%s',
            n / dt, dt, n / cpu, cpu, Liquid::VERSION, flag == '--liquid-c' ? 'yes' : 'no', yjit,
            RUBY_VERSION)
