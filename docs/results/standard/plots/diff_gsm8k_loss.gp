# Written by probmoe. Re-plot with `gnuplot diff_gsm8k_loss.gp` in this directory.
set encoding utf8
do for [format in 'png svg'] {
if (format eq 'png') {
    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
        set terminal pngcairo size 1000,650 noenhanced font 'sans,12'
    } else {
        set terminal png truecolor size 1000,650 noenhanced
    }
} else {
    set terminal svg size 1000,650 dynamic noenhanced font 'sans,12' background rgb 'white'
}
set output 'diff_gsm8k_loss.'.format
set grid back lc rgb '#dddddd'
set title 'GSM8K answer loss: router − topk (mean over seeds, bootstrap 95% interval)'
set ylabel 'difference in GSM8K answer loss'
set xrange [-0.5:4.5]
set yrange [-2.09003:2.04675]
set grid noxtics ytics
set key outside right top vertical Left reverse box samplen 2
set xtics ('topk-lb' 0, 'probmoe' 1, 'probmoe-dyn' 2, 'densemixer' 3, 'softmoe' 4)
plot \
  'diff_gsm8k_loss.dat' using 1:($5 > 0 ? $2 : NaN):3:4:6 with yerrorbars lw 2 pt 7 ps 1.5 lc rgb variable title 'mean, 95% interval', \
  'diff_gsm8k_loss.dat' using 1:2:(sprintf('%.4g', $2)) with labels offset 1.2,0 left notitle, \
  0 with lines dt 2 lw 1.5 lc rgb '#666666' title 'reference 0'
unset output
}
