# Written by probmoe. Re-plot with `gnuplot loss.gp` in this directory.
set encoding utf8
do for [format in 'png svg'] {
if (format eq 'png') {
    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
        set terminal pngcairo size 1000,860 noenhanced font 'sans,12'
    } else {
        set terminal png truecolor size 1000,860 noenhanced
    }
} else {
    set terminal svg size 1000,860 dynamic noenhanced font 'sans,12' background rgb 'white'
}
set output 'loss.'.format
set grid back lc rgb '#dddddd'
set xlabel 'training step'
set ylabel 'loss (nats per token)'
set key outside right top vertical Left reverse box samplen 2
set lmargin 10
set rmargin 34
set multiplot layout 2,1
set title 'pre-training on the text (seed 1)'
set xrange [0:2000]
set yrange [3.20115:4.87062]
plot \
  'loss_0_0.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C00072B2' notitle, \
  'loss_0_0.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#000072B2' notitle, \
  'loss_0_0.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 7 ps 1.2 lc rgb '#000072B2' notitle, \
  keyentry with linespoints lw 2.5 pt 7 ps 1.2 lc rgb '#000072B2' title 'topk backbone', \
  keyentry with lines lw 2.5 lc rgb '#000000' title 'training loss (smoothed)', \
  keyentry with lines lw 1 lc rgb '#C0000000' title 'training loss (raw)', \
  keyentry with linespoints dt 2 lw 1.5 pt 6 ps 1.2 lc rgb '#000000' title 'validation loss'
set title 'fine-tuning on the arithmetic task (seed 1)'
set xrange [0:800]
set yrange [-0.00772805:0.764094]
plot \
  'loss_1_0.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C0D55E00' notitle, \
  'loss_1_1.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C0009E73' notitle, \
  'loss_1_2.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C0CC79A7' notitle, \
  'loss_1_3.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C0E69F00' notitle, \
  'loss_1_4.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C056B4E9' notitle, \
  'loss_1_5.dat' index 0 using 1:2 with lines lw 1 lc rgb '#C0000000' notitle, \
  'loss_1_0.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#00D55E00' notitle, \
  'loss_1_0.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 5 ps 1.2 lc rgb '#00D55E00' notitle, \
  'loss_1_1.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#00009E73' notitle, \
  'loss_1_1.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 9 ps 1.2 lc rgb '#00009E73' notitle, \
  'loss_1_2.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#00CC79A7' notitle, \
  'loss_1_2.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 13 ps 1.2 lc rgb '#00CC79A7' notitle, \
  'loss_1_3.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#00E69F00' notitle, \
  'loss_1_3.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 11 ps 1.2 lc rgb '#00E69F00' notitle, \
  'loss_1_4.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#0056B4E9' notitle, \
  'loss_1_4.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 7 ps 1.2 lc rgb '#0056B4E9' notitle, \
  'loss_1_5.dat' index 0 using 1:3 with lines lw 2.5 lc rgb '#00000000' notitle, \
  'loss_1_5.dat' index 1 using 1:2 with linespoints dt 2 lw 1.5 pt 5 ps 1.2 lc rgb '#00000000' notitle, \
  keyentry with linespoints lw 2.5 pt 5 ps 1.2 lc rgb '#00D55E00' title 'topk', \
  keyentry with linespoints lw 2.5 pt 9 ps 1.2 lc rgb '#00009E73' title 'topk-lb', \
  keyentry with linespoints lw 2.5 pt 13 ps 1.2 lc rgb '#00CC79A7' title 'probmoe', \
  keyentry with linespoints lw 2.5 pt 11 ps 1.2 lc rgb '#00E69F00' title 'probmoe-dyn', \
  keyentry with linespoints lw 2.5 pt 7 ps 1.2 lc rgb '#0056B4E9' title 'densemixer', \
  keyentry with linespoints lw 2.5 pt 5 ps 1.2 lc rgb '#00000000' title 'softmoe', \
  keyentry with lines lw 2.5 lc rgb '#000000' title 'training loss (smoothed)', \
  keyentry with lines lw 1 lc rgb '#C0000000' title 'training loss (raw)', \
  keyentry with linespoints dt 2 lw 1.5 pt 6 ps 1.2 lc rgb '#000000' title 'validation loss'
unset multiplot
unset output
}
